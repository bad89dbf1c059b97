/* In-browser analysis: the Python runtime's face detection, crop and emotion model, run in
   the learner's browser (opencv.js and onnxruntime-web, WebAssembly, served by the app), so
   that only probabilities leave the device. Step for step as src/multinet_emotion/runtime/faces.py
   (HaarDetector.detect, _turned, _rescale, expand_box, crop_faces), blazeface.py
   (BlazeFaceDetector) and classifier.py (predict); the
   settings come from GET /api/analysis (the server's DetectorConfig and the model file's
   metadata). tests/test_browser_analysis.py checks that both give the same probabilities. */
"use strict";
const BrowserAnalysis = (() => {
  /* Python's round(): halves to the even neighbour (Math.round sends them up). */
  function pyRound(x) {
    const f = Math.floor(x);
    const d = x - f;
    return d < 0.5 ? f : d > 0.5 ? f + 1 : (f % 2 === 0 ? f : f + 1);
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = resolve;
      s.onerror = () => reject(new Error("could not load " + src));
      document.head.appendChild(s);
    });
  }

  /* opencv.js's module, once ready, wrapped: it has a then() that resolves to itself, so an
     async function returning it, or awaiting it, would spin forever. */
  async function openCV() {
    const cv = window.cv;
    if (!cv) throw new Error("opencv.js did not define cv");
    if (!cv.Mat) await new Promise(resolve => { cv.onRuntimeInitialized = resolve; });
    return {cv};
  }

  async function fetchBytes(url) {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    return new Uint8Array(await r.arrayBuffer());
  }

  class Analyser {
    constructor(cfg, cv, ort, session, cascade, timings) {
      Object.assign(this, {cfg, cv, ort, session, cascade, timings, blazeface: null});
      this.clahe = new cv.CLAHE(cfg.clahe.clip_limit,
                                new cv.Size(cfg.clahe.tile_grid, cfg.clahe.tile_grid));
    }

    /* The cascade's hits in an equalised grey Mat: [[x, y, w, h], ...] (HaarDetector._scan). */
    scan(image, side) {
      const {cv, cfg} = this;
      const found = new cv.RectVector();
      try {
        this.cascade.detectMultiScale(image, found, cfg.scale_factor, cfg.min_neighbors, 0,
                                      new cv.Size(side, side), new cv.Size(0, 0));
        const rows = [];
        for (let i = 0; i < found.size(); i++) {
          const r = found.get(i);
          rows.push([r.x, r.y, r.width, r.height]);
        }
        return rows;
      } finally {
        found.delete();
      }
    }

    /* A turn of ``cos``, ``sin`` about (cx, cy): faces.turn_matrix, entries in its order. */
    static turnMatrix(cx, cy, cos, sin) {
      return [cos, sin, (1 - cos) * cx - sin * cy, -sin, cos, sin * cx + (1 - cos) * cy];
    }

    /* The point the turn ``m`` sends to (x, y) (faces._unturn). */
    static unturn(m, x, y) {
      const [a, b] = m, det = a * a + b * b;
      const dx = x - m[2], dy = y - m[5];
      return [(a * dx - b * dy) / det, (b * dx + a * dy) / det];
    }

    /* cos and sin of a face's angle, as the server computed them (cfg.tilt_turns). */
    turnOf(angle) {
      const t = this.cfg.tilt_turns.find(([a]) => a === angle);
      if (t) return [t[1], t[2]];
      const r = angle * (Math.PI / 180);  // faces.turn_cos_sin: math.radians, cos, sin
      return [Math.cos(r), Math.sin(r)];
    }

    /* ``src`` turned by matrix ``m`` into a new Mat of width x height (the caller deletes
       it): bilinear, the outside filled with 0 (``replicate``: by repeating the edge). */
    warp(src, m, width, height, replicate) {
      const {cv} = this;
      const mat = cv.matFromArray(2, 3, cv.CV_64F, m);
      const out = new cv.Mat();
      try {
        cv.warpAffine(src, out, mat, new cv.Size(width, height), cv.INTER_LINEAR,
                      replicate ? cv.BORDER_REPLICATE : cv.BORDER_CONSTANT, new cv.Scalar(0));
        return out;
      } finally {
        mat.delete();
      }
    }

    /* Faces in a grey Mat, in its pixels, largest first (HaarDetector.detect + _rescale);
       when none is upright, those of the picture turned by each of cfg.tilt_turns.
       ``upright`` false: the turned scans alone; ``turned`` false: the upright one alone
       (detect_turned, detect_upright). */
    detect(grey, upright = true, turned = true) {
      const {cv, cfg} = this;
      let small = grey, s = 1.0;  // faces.scan_scale
      if (cfg.detect_width > 0 && grey.cols > cfg.detect_width) s = cfg.detect_width / grey.cols;
      if (cfg.min_face * s > cfg.scan_face_px) s = cfg.scan_face_px / cfg.min_face;
      if (s < 1.0) {
        small = new cv.Mat();
        cv.resize(grey, small, new cv.Size(Math.max(1, pyRound(grey.cols * s)),
                                           Math.max(1, pyRound(grey.rows * s))),
                  0, 0, cv.INTER_AREA);
      }
      const eq = new cv.Mat();
      try {
        this.clahe.apply(small, eq);
        const side = Math.max(12, pyRound(cfg.min_face * s));
        let boxes = upright ? this.rescale(this.scan(eq, side), s, 0) : [];
        for (const [angle, cos, sin] of boxes.length || !turned ? [] : cfg.tilt_turns) {
          const m = Analyser.turnMatrix(eq.cols / 2, eq.rows / 2, cos, sin);  // faces._turned
          const turned = this.warp(eq, m, eq.cols, eq.rows, false);
          try {
            const rows = this.scan(turned, side).map(([x, y, w, h]) => {
              const [cx, cy] = Analyser.unturn(m, x + w / 2, y + h / 2);
              return [cx - w / 2, cy - h / 2, w, h];
            });
            boxes = this.rescale(rows, s, angle);
          } finally {
            turned.delete();
          }
          if (boxes.length) break;
        }
        return boxes;
      } finally {
        eq.delete();
        if (small !== grey) small.delete();
      }
    }

    /* The face that was at ``box`` (an earlier frame's), searched for only around it:
       HaarDetector.detect_near, step for step (a tilted face in the region turned upright
       about the box's centre). The box, with its angle, or null. */
    detectNear(grey, box, margin = 0.5) {
      const {cv, cfg} = this;
      const side = Math.max(box.w, box.h);
      const cx = box.x + box.w / 2, cy = box.y + box.h / 2;
      let x0, y0, x1, y1, turn = null;
      if (box.angle) {
        turn = Analyser.turnMatrix(cx, cy, ...this.turnOf(box.angle));
        x0 = Math.trunc(box.x - margin * side);
        y0 = Math.trunc(box.y - margin * side);
        x1 = Math.trunc(box.x + box.w + margin * side);
        y1 = Math.trunc(box.y + box.h + margin * side);
      } else {
        x0 = Math.max(Math.trunc(box.x - margin * side), 0);
        y0 = Math.max(Math.trunc(box.y - margin * side), 0);
        x1 = Math.min(Math.trunc(box.x + box.w + margin * side), grey.cols);
        y1 = Math.min(Math.trunc(box.y + box.h + margin * side), grey.rows);
      }
      if (x1 - x0 < 24 || y1 - y0 < 24) return null;
      const s = Math.min(1.0, 48.0 / Math.max(side, 1));
      let region;
      if (turn === null) {
        region = grey.roi(new cv.Rect(x0, y0, x1 - x0, y1 - y0));
      } else {
        const shifted = turn.slice();
        shifted[2] -= x0;
        shifted[5] -= y0;
        region = this.warp(grey, shifted, x1 - x0, y1 - y0, true);
      }
      const small = new cv.Mat();
      const eq = new cv.Mat();
      const found = new cv.RectVector();
      try {
        let scaled = region;
        if (s < 1.0) {
          cv.resize(region, small, new cv.Size(Math.max(24, pyRound((x1 - x0) * s)),
                                               Math.max(24, pyRound((y1 - y0) * s))),
                    0, 0, cv.INTER_AREA);
          scaled = small;
        }
        const grow = cfg.near_size_change;
        const lo = Math.max(20, Math.trunc(side * s / grow));
        const hi = Math.max(24, Math.trunc(grow * side * s) + 1);
        this.clahe.apply(scaled, eq);
        this.cascade.detectMultiScale(eq, found, cfg.scale_factor, cfg.min_neighbors, 0,
                                      new cv.Size(lo, lo), new cv.Size(hi, hi));
        let best = null, bestIou = 0.0;
        for (let i = 0; i < found.size(); i++) {
          const r = found.get(i);
          const cand = {x: pyRound(x0 + r.x / s), y: pyRound(y0 + r.y / s),
                        w: pyRound(r.width / s), h: pyRound(r.height / s)};
          const iou = Analyser.iou(cand, box);
          if (iou > bestIou && Math.min(cand.w, cand.h) >= cfg.min_face) {
            best = cand;
            bestIou = iou;
          }
        }
        if (best === null) return null;
        if (turn === null) return Object.assign(best, {angle: 0});
        const [bx, by] = Analyser.unturn(turn, best.x + best.w / 2, best.y + best.h / 2);
        return {x: pyRound(bx - best.w / 2), y: pyRound(by - best.h / 2), w: best.w, h: best.h,
                angle: box.angle};
      } finally {
        region.delete();
        small.delete();
        eq.delete();
        found.delete();
      }
    }

    /* Intersection over union of two boxes (faces.Box.iou). */
    static iou(a, b) {
      const ix = Math.max(0, Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x));
      const iy = Math.max(0, Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y));
      const inter = ix * iy;
      const union = Math.max(a.w, 0) * Math.max(a.h, 0) + Math.max(b.w, 0) * Math.max(b.h, 0)
        - inter;
      return union > 0 ? inter / union : 0.0;
    }

    /* Boxes from scan coordinates (scaled by s) to the frame's, big enough, largest first,
       a second hit on a kept face dropped (faces._rescale). */
    rescale(rows, s, angle) {
      const boxes = [];
      for (const [x, y, w, h] of rows) {
        const b = {x: pyRound(x / s), y: pyRound(y / s), w: pyRound(w / s), h: pyRound(h / s),
                   angle};
        if (Math.min(b.w, b.h) >= this.cfg.min_face) boxes.push(b);
      }
      boxes.sort((a, b) => (b.w * b.h - a.w * a.h) || (a.x - b.x) || (a.y - b.y));
      const kept = [];
      for (const b of boxes) {
        const cx = b.x + b.w / 2, cy = b.y + b.h / 2;
        if (!kept.some(k => k.x <= cx && cx <= k.x + k.w && k.y <= cy && cy <= k.y + k.h)) {
          kept.push(b);
        }
      }
      return kept;
    }

    /* The model's input for the faces: crops framed like the training images (crop_faces),
       then the model's value range (classifier.predict), as one float32 batch. */
    crops(grey, boxes) {
      const {cv, cfg} = this;
      const size = cfg.input_size, n = size * size;
      const out = new Float32Array(boxes.length * n);
      const [lo, hi] = cfg.value_range;
      const scale = Math.fround((hi - lo) / 255), offset = Math.fround(lo);
      boxes.forEach((box, i) => {
        const cx = box.x + box.w / 2, cy = box.y + box.h / 2;
        const w = box.w * cfg.crop_scale, h = box.h * cfg.crop_scale;
        const x0 = pyRound(cx - w / 2), y0 = pyRound(cy - h / 2);
        const x1 = x0 + Math.max(1, pyRound(w)), y1 = y0 + Math.max(1, pyRound(h));
        const cx0 = Math.max(x0, 0), cy0 = Math.max(y0, 0);
        const cx1 = Math.min(x1, grey.cols), cy1 = Math.min(y1, grey.rows);
        const turned = !!box.angle;
        if (!turned && (cx1 <= cx0 || cy1 <= cy0)) return;  // entirely outside: zeros
        const roi = turned ? null : grey.roi(new cv.Rect(cx0, cy0, cx1 - cx0, cy1 - cy0));
        const padded = new cv.Mat();
        const crop = new cv.Mat();
        let patch = roi;
        try {
          if (turned) {  // the window of the frame turned upright about the box's centre
            const m = Analyser.turnMatrix(cx, cy, ...this.turnOf(box.angle));
            m[2] -= x0;
            m[5] -= y0;
            patch = this.warp(grey, m, x1 - x0, y1 - y0, true);
          } else if (cx0 !== x0 || cy0 !== y0 || cx1 !== x1 || cy1 !== y1) {
            cv.copyMakeBorder(roi, padded, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1,
                              cv.BORDER_REPLICATE);
            patch = padded;
          }
          cv.resize(patch, crop, new cv.Size(size, size), 0, 0, cv.INTER_AREA);
          const px = crop.data;
          for (let j = 0; j < n; j++) {
            out[i * n + j] = (scale === 1 && offset === 0) ? px[j]
              : Math.fround(Math.fround(px[j] * scale) + offset);
          }
        } finally {
          if (turned && patch) patch.delete();
          if (roi) roi.delete();
          padded.delete();
          crop.delete();
        }
      });
      return out;
    }

    /* Probabilities [N][6] of a float32 batch of crops (the model's "pixels" input). */
    async classify(batch, count) {
      const size = this.cfg.input_size;
      const input = new this.ort.Tensor("float32", batch, [count, 1, size, size]);
      const result = await this.session.run({pixels: input});
      const probs = result.probs.data;
      const k = this.cfg.labels.length;
      return Array.from({length: count}, (_, i) => Array.from(probs.subarray(i * k, (i + 1) * k)));
    }

    /* Every face of an RGBA ImageData: [{box: [x, y, w, h], angle, probs: [6]}], largest first
       (angle: Box.angle, the turn that stands a tilted face upright),
       and the milliseconds taken. ``maxFaces`` limits how many are classified. */
    async analyse(image, maxFaces = Infinity, follower = null) {
      const {cv} = this;
      const t0 = performance.now();
      const rgba = cv.matFromImageData(image);
      const grey = new cv.Mat();
      const rgb = this.blazeface ? new cv.Mat() : null;
      try {
        cv.cvtColor(rgba, grey, cv.COLOR_RGBA2GRAY);
        if (rgb) cv.cvtColor(rgba, rgb, cv.COLOR_RGBA2RGB);
        const picture = rgb || grey;  // what the face detector reads
        const boxes = (follower ? await follower.detect(picture)
          : this.blazeface ? await this.blazeface.detect(picture) : this.detect(picture))
          .slice(0, maxFaces);
        const t1 = performance.now();
        const probs = boxes.length ? await this.classify(this.crops(grey, boxes), boxes.length) : [];
        const t2 = performance.now();
        return {faces: boxes.map((b, i) => ({box: [b.x, b.y, b.w, b.h], angle: b.angle,
                                             probs: probs[i]})),
                ms: {detect: t1 - t0, classify: t2 - t1, total: t2 - t0}};
      } finally {
        rgba.delete();
        grey.delete();
        if (rgb) rgb.delete();
      }
    }
  }

  /* MediaPipe's BlazeFace in onnxruntime-web: blazeface.BlazeFaceDetector step for step
     (squares, _run, _merge, _box, _boxes, detect, detect_near_all), on an RGB Mat. ``b``:
     the server's settings for it (cfg.blazeface). */
  class BlazeFace {
    constructor(b, cv, ort, session, follower) {
      Object.assign(this, {b, cv, ort, session, follower, anchors: BlazeFace.anchors()});
      this.logit = b.score <= 0 ? -Infinity : b.score >= 1 ? Infinity
        : Math.log(b.score / (1 - b.score));
    }

    /* The 896 anchor centres: 2 per cell of a 16x16 grid, then 6 per cell of an 8x8 grid. */
    static anchors() {
      const out = [];
      for (const [cells, per] of [[16, 2], [8, 6]]) {
        for (let y = 0; y < cells; y++) {
          for (let x = 0; x < cells; x++) {
            for (let k = 0; k < per; k++) out.push([(x + 0.5) / cells, (y + 0.5) / cells]);
          }
        }
      }
      return out;
    }

    /* IoU of two (cx, cy, w, h) boxes (blazeface._iou). */
    static iou(a, b) {
      const iw = Math.max(Math.min(a[0] + a[2] / 2, b[0] + b[2] / 2)
                          - Math.max(a[0] - a[2] / 2, b[0] - b[2] / 2), 0);
      const ih = Math.max(Math.min(a[1] + a[3] / 2, b[1] + b[3] / 2)
                          - Math.max(a[1] - a[3] / 2, b[1] - b[3] / 2), 0);
      const inter = iw * ih;
      const union = a[2] * a[3] + b[2] * b[3] - inter;
      return union > 0 ? inter / Math.max(union, 1e-12) : 0.0;
    }

    /* MediaPipe's weighted non-maximum suppression (blazeface._merge). */
    static merge(rows, iou) {
      const order = rows.map((r, i) => [r, i]).sort((p, q) => (q[0][0] - p[0][0]) || (p[1] - q[1]))
        .map(p => p[0]);
      const left = order.map(() => true);
      const out = [];
      for (let i = 0; i < order.length; i++) {
        if (!left[i]) continue;
        const idx = [];
        for (let j = i; j < order.length; j++) if (left[j]) idx.push(j);
        const first = order[idx[0]].slice(1, 5);
        const group = idx.filter(j => BlazeFace.iou(first, order[j].slice(1, 5)) >= iou);
        let wsum = 0;
        const merged = new Array(16).fill(0);
        for (const j of group) {
          const w = order[j][0];
          wsum += w;
          for (let c = 0; c < 16; c++) merged[c] += order[j][c + 1] * w;
        }
        out.push([order[idx[0]][0], ...merged.map(v => v / wsum)]);
        for (const j of group) left[j] = false;
      }
      return out;
    }

    /* Detections in the square (x0, y0, side) of ``rgb``: rows (score, cx, cy, w, h,
       keypoints...) in frame pixels (BlazeFaceDetector._run); ``follow``: by the model that
       follows faces (FOLLOW), else the whole frame's. */
    async run(rgb, x0, y0, side, follow = false) {
      const {cv, b} = this, n = follow ? b.follow.size : b.size, s = n / side;
      const session = follow ? this.follower : this.session;
      const mat = cv.matFromArray(2, 3, cv.CV_64F, [s, 0, -x0 * s, 0, s, -y0 * s]);
      const square = new cv.Mat();
      let result;
      try {
        cv.warpAffine(rgb, square, mat, new cv.Size(n, n), s > 1 ? cv.INTER_LINEAR : cv.INTER_AREA,
                      cv.BORDER_CONSTANT, new cv.Scalar(0, 0, 0, 0));
        const px = square.data, x = new Float32Array(px.length);
        for (let i = 0; i < px.length; i++) x[i] = Math.fround(Math.fround(px[i] / 127.5) - 1);
        const input = new this.ort.Tensor("float32", x, [1, n, n, 3]);
        result = await session.run({[session.inputNames[0]]: input});
      } finally {
        mat.delete();
        square.delete();
      }
      const [sa, sb, ba, bb] = session.outputNames.map(name => result[name].data);
      const scores = Array.from(sa).concat(Array.from(sb));
      const rows = [];
      for (let i = 0; i < scores.length; i++) {
        if (!(scores[i] > this.logit)) continue;
        const r = i < sa.length ? ba.subarray(i * 16, i * 16 + 16)
          : bb.subarray((i - sa.length) * 16, (i - sa.length) * 16 + 16);
        const [ax, ay] = this.anchors[i];
        const row = [1 / (1 + Math.exp(-Math.min(Math.max(scores[i], -100), 100))),
                     ax + r[0] / n, ay + r[1] / n, r[2] / n, r[3] / n];
        for (let k = 0; k < 6; k++) row.push(ax + r[4 + 2 * k] / n, ay + r[5 + 2 * k] / n);
        rows.push(row);
      }
      if (!rows.length) return [];
      return BlazeFace.merge(rows, b.nms).map(row => row.map((v, c) => c === 0 ? v
        : c === 3 || c === 4 ? v * side : v * side + (c % 2 ? x0 : y0)));
    }

    /* The face square the crops expect, with its eye-line roll, or null (_box). */
    box(row, follow = false) {
      const b = this.b, [, cx, cyRaw, w, h] = row, fit = follow ? b.follow.fit : b.fit;
      const side = Math.max(w, h) * fit[0];
      const cy = cyRaw + fit[1] * h;
      if (side < b.min_face) return null;
      let angle = 0.0;
      if (b.align) {
        angle = Math.atan2(row[8] - row[6], row[7] - row[5]) * (180 / Math.PI);
        angle = Math.abs(angle) < b.align_min ? 0.0 : parseFloat(angle.toFixed(1));
      }
      return {x: pyRound(cx - side / 2), y: pyRound(cy - side / 2), w: pyRound(side),
              h: pyRound(side), angle};
    }

    /* Boxes from rows, largest first, a box centred in a larger kept one dropped (_boxes). */
    boxes(rows, follow = false) {
      const found = rows.map(r => this.box(r, follow)).filter(x => x !== null);
      found.sort((p, q) => (q.w * q.h - p.w * p.h) || (p.x - q.x) || (p.y - q.y));
      const kept = [];
      for (const f of found) {
        const cx = f.x + f.w / 2, cy = f.y + f.h / 2;
        if (!kept.some(k => k.x <= cx && cx <= k.x + k.w && k.y <= cy && cy <= k.y + k.h)) {
          kept.push(f);
        }
      }
      return kept;
    }

    /* The squares passed for a whole frame: letterboxed, then min_face's tiles (squares). */
    squares(width, height) {
      const b = this.b, side = Math.max(width, height);
      const out = [[(width - side) / 2, (height - side) / 2, side]];
      const tile = b.min_face / b.reliable;
      if (b.min_face <= 0 || tile >= side || !b.tiled) return out;
      const overlap = Math.min(b.reliable * side, tile / 2);
      const starts = length => {
        if (length <= tile) return [(length - tile) / 2];
        const count = Math.max(Math.ceil((length - overlap) / (tile - overlap)), 2);
        const step = (length - tile) / (count - 1);  // numpy.linspace
        return Array.from({length: count}, (_, i) => i === count - 1 ? length - tile : i * step);
      };
      for (const y of starts(height)) for (const x of starts(width)) out.push([x, y, tile]);
      return out;
    }

    async detect(rgb) {
      const squares = this.squares(rgb.cols, rgb.rows);
      let rows = await this.run(rgb, ...squares[0]);
      if (squares.length > 1) {
        let tiles = [];
        for (const sq of squares.slice(1)) tiles = tiles.concat(await this.run(rgb, ...sq));
        rows = rows.concat(await this.confirmed(rgb, rows, tiles));
        if (rows.length) rows = BlazeFace.merge(rows, this.b.nms);
      }
      return this.boxes(rows);
    }

    /* The tiles' detections the whole frame's pass found too, or that the following model
       finds again on a region around them (_confirmed). */
    async confirmed(rgb, whole, tiles) {
      if (!tiles.length) return [];
      const seen = whole.map(r => this.box(r)).filter(x => x !== null);
      const out = [];
      for (const row of BlazeFace.merge(tiles, this.b.nms)) {
        const box = this.box(row);
        if (box !== null && (seen.some(s => Analyser.iou(s, box) > 0.3) ||
                             (await this.region(rgb, box)).some(a => Analyser.iou(a, box) > 0.3))) {
          out.push(row);
        }
      }
      return out;
    }

    /* Faces the following model finds in a region b.region times ``o``'s side (_region). */
    async region(rgb, o) {
      const s = Math.max(o.w, o.h) * this.b.region, cx = o.x + o.w / 2, cy = o.y + o.h / 2;
      return this.boxes(await this.run(rgb, cx - s / 2, cy - s / 2, s, true), true);
    }

    /* The faces that were at ``boxes`` in an earlier frame, or null each (detect_near_all):
       each looked for by the following model in a region b.region times its side. */
    async nearAll(rgb, boxes) {
      let found = [];
      for (const o of boxes) found = found.concat(await this.region(rgb, o));
      const pairs = [];
      boxes.forEach((o, i) => found.forEach((f, j) => pairs.push([Analyser.iou(o, f), i, j])));
      pairs.sort((p, q) => (q[0] - p[0]) || (q[1] - p[1]) || (q[2] - p[2]));
      const out = boxes.map(() => null), taken = new Set();
      for (const [iou, i, j] of pairs) {
        if (iou > 0.3 && out[i] === null && !taken.has(j)) {
          out[i] = found[j];
          taken.add(j);
        }
      }
      return out;
    }
  }

  /* The learner's face from frame to frame with BlazeFace, as EmotionDetector.process
     follows one face with it: the whole frame every cfg.detect_every frames (and while
     nobody is in view, every cfg.search_every-th frame), in between the face looked for
     where it was (detect_near_all) and the whole frame at once when it is not there. */
  class BlazeFollower {
    constructor(analyser) {
      Object.assign(this, {analyser, box: null, frames: 0, sinceSearch: Infinity, scans: 0});
    }
    async detect(rgb) {
      const a = this.analyser, cfg = a.cfg;
      const full = this.box === null || this.frames % cfg.detect_every === 0;
      this.frames++;
      if (this.box === null && this.sinceSearch + 1 < cfg.search_every) {
        this.sinceSearch++;
        return [];
      }
      if (!full) {
        const [near] = await a.blazeface.nearAll(rgb, [this.box]);
        if (near !== null) return [this.box = near];
      }
      this.scans++;
      this.sinceSearch = 0;
      const found = await a.blazeface.detect(rgb);
      this.box = found.length ? found[0] : null;
      return found;
    }
  }

  /* The learner's face from frame to frame, found as the Python runtime's EmotionDetector
     finds it (detect.py, one face): the whole frame scanned every cfg.detect_every frames,
     in between the face searched for only around its last box (detectNear, about a fifth
     of a scan) and the whole frame at once when it is not there; while nobody is in view
     every cfg.search_every-th frame is scanned, and turned for a tilted head only on every
     cfg.tilt_every-th such scan (the first after the face was lost always). */
  class Follower {
    constructor(analyser) {
      Object.assign(this, {analyser, box: null, frames: 0, sinceSearch: Infinity, bare: 0,
                           scans: 0});
    }
    detect(grey) {
      const a = this.analyser, cfg = a.cfg;
      const full = this.box === null || this.frames % cfg.detect_every === 0;
      this.frames++;
      if (this.box === null && this.sinceSearch + 1 < cfg.search_every) {
        this.sinceSearch++;  // nobody at the last scan: this frame is not scanned
        return [];
      }
      if (!full) {
        const near = a.detectNear(grey, this.box);
        if (near !== null) return [this.box = near];
      }
      this.scans++;
      this.sinceSearch = 0;
      const boxes = a.detect(grey, true, false);
      const last = this.box;
      if (last !== null && last.angle && !boxes.some(b => Analyser.iou(b, last) > 0.3)) {
        const near = a.detectNear(grey, last);
        if (near !== null) boxes.push(near);
      }
      const found = boxes.length || this.bare % cfg.tilt_every !== 0 ? boxes
        : a.detect(grey, false, true);
      this.bare = found.length ? 0 : this.bare + 1;
      this.box = found.length ? found[0] : null;
      return found;
    }
  }

  /* The learner's face over time, as the runtime's tracker smooths it: an exponential moving
     average (weight alpha on the newest reading), started afresh once the face has been
     missing for MAX_MISSED readings (TrackerConfig.max_missed). */
  class Smoother {
    constructor(alpha) { Object.assign(this, {alpha, value: null, missed: 0}); }
    static MAX_MISSED = 5;
    update(probs) {
      if (!probs) {
        if (++this.missed > Smoother.MAX_MISSED) this.value = null;
        return null;
      }
      this.missed = 0;
      this.value = this.value === null ? probs.slice()
        : probs.map((p, i) => this.alpha * p + (1 - this.alpha) * this.value[i]);
      return this.value;
    }
  }

  /* The label people are shown: label_filter.LabelFilter step for step (a sticky
     hidden-Markov forward filter over the six emotions; see that module for the model).
     ``cfg``: FilterConfig's settings as the server sends them (stay, evidence, margin,
     min_evidence, gap). tests/test_browser_analysis.py checks that both give the same
     posteriors and labels. */
  class LabelFilter {
    static FIRST_DT = 0.1;
    static MAX_DT = 1.0;
    static FLOOR = 1e-4;
    static EPS = 1e-9;
    constructor(cfg) { this.cfg = cfg; this.reset(); }
    reset() { this.posterior = null; this.index = null; this.evidence = 0; this.lastT = null; }
    update(probs, t, settle = false) {
      const c = this.cfg;
      if (this.lastT !== null && (t - this.lastT > c.gap || t < this.lastT)) this.reset();
      const dt = this.lastT === null ? LabelFilter.FIRST_DT
        : Math.min(t - this.lastT, LabelFilter.MAX_DT);
      const k = probs.length;
      let prior;
      if (this.posterior === null) {
        prior = new Array(k).fill(1 / k);
      } else {
        const keep = Math.pow(c.stay, dt);
        prior = this.posterior.map(b => keep * b + (1 - keep) / k);
      }
      const w = c.evidence * dt;
      const post = prior.map((b, i) => b * Math.pow(Math.max(probs[i], LabelFilter.FLOOR), w));
      let total = 0;
      for (const x of post) total += x;
      this.posterior = post.map(x => x / total);
      this.evidence += dt;
      this.lastT = t;
      let top = 0;
      for (let i = 1; i < k; i++) if (this.posterior[i] > this.posterior[top]) top = i;
      if (this.index === null) {
        if (settle || this.evidence >= c.min_evidence - LabelFilter.EPS) this.index = top;
      } else if (top !== this.index &&
                 this.posterior[top] - this.posterior[this.index] >= c.margin - LabelFilter.EPS) {
        this.index = top;
      }
      return this.index;
    }
  }

  /* The learner's face as the runtime's tracker keeps it (tracking.Track, for the one face
     the page follows): confirmed once found in ``confirm_hits`` frames in a row (a miss
     before that forgets it), forgotten once missing for ``max_missed`` frames; its
     probabilities smoothed (Smoother) and its label filtered (LabelFilter) over the raw
     readings. ``update`` returns what to show: null while there is no confirmed face, else
     {probs (smoothed), raw, label (null: still reading), share (the label's own
     probability)}. */
  class FaceTrack {
    constructor(cfg) { this.cfg = cfg; this.forget(); }
    forget() {
      this.hits = 0; this.missed = 0; this.confirmed = false;
      this.smoother = new Smoother(this.cfg.smoothing_alpha);
      this.filter = new LabelFilter(this.cfg.label);
    }
    update(raw, t) {
      if (!raw) {
        if (!this.confirmed || ++this.missed > this.cfg.max_missed) this.forget();
        return null;
      }
      this.missed = 0;
      this.hits++;
      if (this.hits >= this.cfg.confirm_hits) this.confirmed = true;
      const probs = this.smoother.update(raw);
      this.filter.update(raw, t);
      if (!this.confirmed) return null;
      const label = this.filter.index;
      return {probs, raw, label, share: label === null ? null : probs[label]};
    }
  }

  /* WebAssembly threads for onnxruntime-web (its intra-op thread pool). They need
     SharedArrayBuffer, which a page has only when cross-origin isolated: /learn is served
     with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy:
     require-corp when the server offers in-browser analysis (server/browser.py). Inside an
     LTI platform's frame the page is not isolated (its parent is not) and runs one thread.
     DEFAULT_THREADS 2: on the quiet 2-core machine bench/browser.py measured 130 ms a face
     with 2 threads against 159 ms with 1 (x0.82), the same probabilities (difference 0).
     At most MAX_THREADS, and never more than the cores. */
  const DEFAULT_THREADS = 2;
  const MAX_THREADS = 4;
  function threadCount(requested) {
    if (!self.crossOriginIsolated || typeof SharedArrayBuffer === "undefined") return 1;
    const cores = navigator.hardwareConcurrency || 1;
    return Math.max(1, Math.min(requested ?? DEFAULT_THREADS, cores, MAX_THREADS));
  }

  /* Session options. graphOptimizationLevel "all" is the Python runtime's default, so the
     same fused int8 kernels run in both (the probabilities stay equal). Measured and left
     out (bench/browser.py --variant): the CPU memory arena and memory pattern (off in
     onnxruntime-web unless asked; no gain), and executionMode "parallel" (the WebAssembly
     build has one inter-op thread, onnxruntime/wasm/api.cc: it cannot run the model's
     two flip passes side by side). */
  const SESSION_OPTIONS = {executionProviders: ["wasm"], graphOptimizationLevel: "all",
                           executionMode: "sequential"};

  /* Load everything (scripts, cascade, model) for the settings of GET /api/analysis.
     ``options`` (measurements only, bench/browser.py): ``threads`` (at most; 1 = none) and
     ``session`` (onnxruntime-web session options replacing SESSION_OPTIONS' own). */
  async function load(cfg, options = {}) {
    if (typeof WebAssembly !== "object") throw new Error("this browser cannot run WebAssembly");
    const t0 = performance.now();
    const model = fetchBytes(cfg.model);  // the largest download first, in parallel
    window.OPENCV_WASM_BINARY = await fetchBytes(cfg.opencv_wasm);  // opencv.js takes it
    await loadScript(cfg.opencv);
    const {cv} = await openCV();
    delete window.OPENCV_WASM_BINARY;
    await loadScript(cfg.ort);
    let cascade = null;
    if (cfg.detector === "haar") {
      const xml = await fetchBytes(cfg.cascade);
      const name = "frontalface.xml";
      try { cv.FS_unlink("/" + name); } catch (e) { /* not there yet */ }
      cv.FS_createDataFile("/", name, xml, true, false, false);
      cascade = new cv.CascadeClassifier();
      if (!cascade.load(name)) throw new Error("opencv.js could not read the Haar cascade");
    }
    const ort = window.ort;
    ort.env.wasm.numThreads = threadCount(options.threads);
    ort.env.wasm.proxy = false;
    ort.env.wasm.wasmPaths = {mjs: new URL(cfg.ort_mjs, location.href).href,
                              wasm: new URL(cfg.ort_wasm, location.href).href};
    const bytes = await model;
    const t1 = performance.now();
    const session = await ort.InferenceSession.create(
      bytes, Object.assign({}, SESSION_OPTIONS, options.session || {}));
    const analyser = new Analyser(cfg, cv, ort, session, cascade,
                                  {download_ms: t1 - t0, startup_ms: performance.now() - t0});
    if (cfg.detector === "blazeface") {  // one thread: a face detector's pass is small
      // (logSeverityLevel 3: the converted graph has unused initializers, not news)
      const options = Object.assign({}, SESSION_OPTIONS, {logSeverityLevel: 3});
      const [detector, follower] = await Promise.all([cfg.blazeface.model,
                                                      cfg.blazeface.follow.model].map(
        async url => ort.InferenceSession.create(await fetchBytes(url), options)));
      analyser.blazeface = new BlazeFace(cfg.blazeface, cv, ort, detector, follower);
    }
    // what runs: onnxruntime-web falls back to one thread where workers cannot start
    analyser.runtime = {threads: ort.env.wasm.numThreads, isolated: !!self.crossOriginIsolated,
                        cores: navigator.hardwareConcurrency || null};
    // the first run sets up the kernels: do it now, not on the learner's first picture
    await analyser.classify(new Float32Array(cfg.input_size * cfg.input_size), 1);
    analyser.timings.ready_ms = performance.now() - t0;
    return analyser;
  }

  let loading = null;
  /* The analyser of this server (loaded once), or an Error saying why there is none. */
  function ready() {
    if (!loading) {
      loading = fetch("/api/analysis").then(r => r.json()).then(info => {
        if (!info.browser) throw new Error(info.browser_note || "not offered by this server");
        return load(info.browser);
      });
    }
    return loading;
  }

  /* The follower of the analyser's face detector. */
  function follower(analyser) {
    return analyser.blazeface ? new BlazeFollower(analyser) : new Follower(analyser);
  }

  return {ready, load, follower, Smoother, Follower, BlazeFollower, LabelFilter, FaceTrack,
          pyRound};
})();

/* For tests and measurements: every face of an RGBA ImageData, analysed in the browser. */
async function analyseImage(image) {
  return (await BrowserAnalysis.ready()).analyse(image);
}
