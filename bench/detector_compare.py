"""Haar and BlazeFace on the same frames: ``python bench/detection.py --compare`` and
``--blazeface-fit`` (this module holds those two sections of bench/detection.py).

--compare: FER2013 PrivateTest faces pasted into 320x240 grey scenes (a gradient with
sensor noise, a lamp, a round emblem and a hand in every frame, JPEG 70), per condition:

- size: small (24-39 px), medium (60-100 px), large (110-170 px);
- yaw: the face as a plane turned 30, 45 or 60 degrees about its vertical line
  (``corruptions._rotated_plane_warp``, the robustness suite's head turn);
- roll: the frame turned 20 or 35 degrees about the face;
- light: dim (a third of the light, more sensor noise);
- three faces in one frame; nobody (only the background and its distractors).

Then real photographs, when scikit-image is installed (its wheel carries them): two faces
(an astronaut, a cameraman in profile) and 16 pictures without a person (a cat, coins, a
cup, a horse, a page...), each 320 and 640 px wide.

For each detector (Haar as the runtime runs it, with the turned scans; BlazeFace front and
back, with the tiles ``min_face`` asks for), all with ``min_face`` 20 px (the default, 48,
ignores the small faces): recall (a face counts as found when a box overlaps it by
IoU > 0.3), false detections per frame (boxes on no face), each BlazeFace model against
Haar on turned and small faces; and the CPU of a frame's detection at 320x240 and at
640x480 (the same frames enlarged), one thread, at the default ``min_face`` and at 20 px.
Then the emotion model's accuracy (single-pass model, FER2013 labels) on the rolled faces
BlazeFace finds, the crop turned upright by the eye line or not.

--blazeface-fit: BlazeFace's box against the pasted face square on FER2013 training faces
(median size ratio and centre offset: ``blazeface.FIT``, and the spread from face to face),
how steady the box is when the network runs on a region around the face instead of the
whole frame, the following model's box against the whole frame's (``blazeface.FOLLOW``),
and the faces one pass finds by the share of its square they fill (``blazeface.RELIABLE``).
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from multinet_emotion.progress import bar
from multinet_emotion.runtime.faces import (
    Box,
    DetectorConfig,
    FaceDetector,
    crop_faces,
    make_detector,
)
from multinet_emotion.training.corruptions import _rotated_plane_warp

W, H = 320, 240


def scene(rng: np.random.Generator) -> np.ndarray:
    """A grey 320x240 room with a lamp, a round emblem and a hand."""
    lo, hi = rng.integers(40, 110), rng.integers(130, 210)
    bg = np.tile(np.linspace(lo, hi, W, dtype=np.float32), (H, 1))
    cv2.circle(bg, (int(rng.integers(15, 60)), int(rng.integers(15, 50))), 13, 245.0, -1)
    ex, ey = int(rng.integers(250, 305)), int(rng.integers(20, 60))
    cv2.circle(bg, (ex, ey), 16, 200.0, -1)  # an emblem: rings and two dots
    cv2.circle(bg, (ex, ey), 10, 60.0, 2)
    cv2.circle(bg, (ex - 5, ey - 3), 2, 30.0, -1)
    cv2.circle(bg, (ex + 5, ey - 3), 2, 30.0, -1)
    hx, hy = int(rng.integers(240, 300)), int(rng.integers(170, 215))
    cv2.ellipse(bg, (hx, hy), (15, 20), 10, 0, 360, 170.0, -1)
    for k in range(4):
        cv2.line(bg, (hx - 9 + 6 * k, hy - 12), (hx - 11 + 7 * k, hy - 34), 170.0, 5)
    return bg + rng.normal(0, 5, (H, W)).astype(np.float32)


def _jpeg(frame: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", np.clip(frame, 0, 255).astype(np.uint8),
                           [cv2.IMWRITE_JPEG_QUALITY, 70])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGR)


def make_frame(faces: list[np.ndarray], condition: str, rng: np.random.Generator,
               pyrng: random.Random) -> tuple[np.ndarray, list[Box]]:
    """One frame of a condition and the true face squares."""
    frame = scene(rng)
    boxes: list[Box] = []
    sizes = {"small": (24, 39), "large": (110, 170)}.get(condition, (60, 100))
    spots = [(0, W), ] if condition != "three" else [(0, 100), (105, 205), (210, 320)]
    for (lo_x, hi_x), face in zip(spots, faces):
        side = pyrng.randint(*sizes)
        x = pyrng.randint(lo_x, max(lo_x, hi_x - side))
        y = pyrng.randint(0, H - side)
        img = face
        if condition.startswith("yaw"):
            deg = float(condition[3:]) * pyrng.choice([-1, 1])
            img = _rotated_plane_warp(face[None], np.array([deg]), "y")[0]
        frame[y:y + side, x:x + side] = cv2.resize(img, (side, side),
                                                   interpolation=cv2.INTER_CUBIC)
        boxes.append(Box(x, y, side, side))
    if condition.startswith("roll"):
        deg = float(condition[4:]) * pyrng.choice([-1, 1])
        m = cv2.getRotationMatrix2D(boxes[0].center, deg, 1.0)
        frame = cv2.warpAffine(frame, m, (W, H), borderMode=cv2.BORDER_REPLICATE)
    if condition == "dim":
        frame = frame / 3 + rng.normal(0, 6, (H, W))
    if condition == "nobody":
        frame = scene(rng)
        boxes = []
    return _jpeg(frame), boxes


#: --blazeface-score: BlazeFace's score threshold in the comparison (None: the runtime's)
SCORE: float | None = None


def named(name: str, min_face: int) -> FaceDetector:
    """The detector a table column names ("haar", "blazeface back"...) at ``min_face``."""
    kind, _, model = name.partition(" ")
    extra: dict = {"blazeface": model} if model else {}
    if model and SCORE is not None:
        extra["blazeface_score"] = SCORE
    return make_detector(DetectorConfig(kind=kind, min_face=min_face, **extra))


def tally(det: FaceDetector, frames: list[tuple[np.ndarray, list[Box]]]) -> tuple[int, int, int]:
    """Faces found (a box overlapping one by IoU > 0.3), faces there, and false detections
    (boxes on no face) over ``frames``."""
    found = total = false = 0
    for img, truth in frames:
        boxes = det.detect(img)
        total += len(truth)
        found += sum(any(b.iou(t) > 0.3 for b in boxes) for t in truth)
        false += sum(all(b.iou(t) <= 0.3 for t in truth) for b in boxes)
    return found, total, false


CONDITIONS = ("medium", "small", "large", "yaw30", "yaw45", "yaw60", "roll20", "roll35",
              "dim", "three", "nobody")


def compare(faces: list[np.ndarray], labels: list[str], per: int, seed: int) -> dict:
    rng, pyrng = np.random.default_rng(seed), random.Random(seed)
    cv2.setNumThreads(1)
    # min_face 20 for every detector: the small faces would be ignored at the default 48
    detectors = {name: named(name, 20) for name in ("haar", "blazeface front", "blazeface back")}
    out: dict = {"frames_per_condition": per, "conditions": {}}
    k = 0
    frames_by: dict[str, list] = {}
    for cond in CONDITIONS:
        frames = []
        for _ in range(per):
            n = 3 if cond == "three" else 1
            chosen = [faces[(k + j) % len(faces)] for j in range(n)]
            k += n
            frames.append(make_frame(chosen, cond, rng, pyrng))
        frames_by[cond] = frames
    print("5. Haar and BlazeFace on the same frames (FER2013 PrivateTest faces; a lamp, an "
          f"emblem and a hand in every frame; {per} frames a condition): recall, false "
          "detections per frame")
    header = f"   {'condition':10s}" + "".join(f" | {name:>24s}" for name in detectors)
    print(header)
    for cond, frames in frames_by.items():
        row = {}
        for name, det in detectors.items():
            found, total, false = tally(det, frames)
            row[name] = {"recall_pct": round(100 * found / total, 1) if total else None,
                         "false_per_frame": round(false / len(frames), 3)}
        out["conditions"][cond] = row
        cells = "".join(
            f" | {('-' if r['recall_pct'] is None else str(r['recall_pct']) + '%'):>9s} found, "
            f"{r['false_per_frame']:5.3f} false" for r in row.values())
        print(f"   {cond:10s}{cells}")
    summary(out["conditions"])
    out["photos"] = photos(list(detectors))
    # the CPU of a frame at 320 and 640 px, at the default min_face and at 20 px
    sample = [img for cond in ("medium", "nobody") for img, _ in frames_by[cond][:40]]
    out["cpu_ms"] = {}
    for min_face in (DetectorConfig().min_face, 20):
        for name in detectors:
            det = named(name, min_face)
            cost = {}
            for width in (320, 640):
                imgs = [cv2.resize(i, (width, width * 3 // 4)) for i in sample]
                det.detect(imgs[0])
                times = []
                for img in imgs:
                    t = time.process_time()
                    det.detect(img)
                    times.append((time.process_time() - t) * 1000)
                cost[str(width)] = round(statistics.median(times), 2)
            out["cpu_ms"][f"{name}, min_face {min_face}"] = cost
            print(f"   CPU a frame, {name}, min_face {min_face}: {cost['320']:.1f} ms at 320x240, "
                  f"{cost['640']:.1f} ms at 640x480 (median, one thread; half with a face, "
                  "half without)")
    out["alignment"] = alignment(frames_by, faces, labels, detectors["blazeface back"], per)
    return out


#: Real photographs that ship in scikit-image's wheel (``pip install scikit-image``): two
#: with a face (its square, in the 512x512 picture: looked up by eye) and others without.
PHOTO_FACES = {"astronaut.png": Box(170, 60, 110, 110), "camera.png": Box(185, 110, 85, 85)}
PHOTOS_WITHOUT = ("chelsea.png", "coffee.png", "coins.png", "horse.png", "motorcycle_left.png",
                  "page.png", "clock_motion.png", "hubble_deep_field.jpg", "rocket.jpg",
                  "brick.png", "gravel.png", "grass.png", "logo.png", "retina.jpg", "text.png",
                  "color.png")


def photos(names: list[str]) -> dict | None:
    """Each detector on scikit-image's photographs, 320 and 640 px wide, at the default
    ``min_face`` and at 20 px: faces found (of 4) and false detections (a cat's face
    counts as false); None when scikit-image is not installed."""
    import importlib.util
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        print("   real photographs: skipped (pip install scikit-image: its wheel carries them)")
        return None
    folder = Path(spec.origin).parent / "data"
    shots = []
    for name in (*PHOTO_FACES, *PHOTOS_WITHOUT):
        image = cv2.imread(str(folder / name))
        if image is None:
            continue
        for width in (320, 640):
            s = width / max(image.shape[:2])
            img = cv2.resize(image, None, fx=s, fy=s,
                             interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            t = PHOTO_FACES.get(name)
            shots.append((img, [Box(round(t.x * s), round(t.y * s), round(t.w * s),
                                    round(t.h * s))] if t else []))
    out: dict = {"pictures": len(shots)}
    for min_face in (DetectorConfig().min_face, 20):
        for name in names:
            found, total, false = tally(named(name, min_face), shots)
            out[f"{name}, min_face {min_face}"] = {"found": found, "faces": total,
                                                   "false": false}
            print(f"   real photographs ({len(shots)}: scikit-image's, 320 and 640 px wide), "
                  f"{name}, min_face {min_face}: {found} of {total} faces found, {false} "
                  "false detections")
    return out


def summary(conditions: dict) -> None:
    """Each BlazeFace model against Haar on turned (yaw 30-60) and small faces, and false
    detections per frame over every condition."""
    def mean(name: str, conds: tuple[str, ...], key: str) -> float:
        values = [conditions[c][name][key] for c in conds]
        return sum(values) / len(values)

    turned, every = ("yaw30", "yaw45", "yaw60"), tuple(conditions)
    for name in conditions["medium"]:
        if name == "haar":
            continue
        parts = []
        for what, conds in (("turned 30-60 degrees", turned), ("small", ("small",))):
            mine, haar = mean(name, conds, "recall_pct"), mean("haar", conds, "recall_pct")
            parts.append(f"{what} {mine:.1f}% against {haar:.1f}% ({mine - haar:+.1f} points)")
        mine, haar = mean(name, every, "false_per_frame"), mean("haar", every, "false_per_frame")
        print(f"   {name} against haar: found {', '.join(parts)}; false detections per frame "
              f"{mine:.3f} against {haar:.3f}")


def alignment(frames_by: dict, faces: list[np.ndarray], labels: list[str], det, per: int
              ) -> dict:
    """The model's accuracy (FER2013 labels) on rolled faces BlazeFace finds, the crop
    turned upright by the eye line, or not."""
    from multinet_emotion.emotions import EMOTIONS
    from multinet_emotion.runtime.classifier import default_model_path, load_model
    from multinet_emotion.runtime.onnx_graph import single_pass_model

    model = load_model(single_pass_model(default_model_path()))
    right = {"aligned": 0, "not aligned": 0}
    n = 0
    for cond in ("roll20", "roll35", "medium"):
        start = CONDITIONS.index(cond) * per  # (one face a frame before "three")
        for i, (img, truth) in enumerate(frames_by[cond]):
            boxes = [b for b in det.detect(img) if b.iou(truth[0]) > 0.3]
            if not boxes:
                continue
            label = labels[(start + i) % len(labels)]
            if label not in EMOTIONS:
                continue
            b = boxes[0]
            flat = Box(b.x, b.y, b.w, b.h, b.score, 0.0)
            crops = crop_faces(img, [b, flat], model.input_size, model.crop_scale)
            probs = model.predict(crops)
            n += 1
            right["aligned"] += EMOTIONS[int(np.argmax(probs[0]))] == label
            right["not aligned"] += EMOTIONS[int(np.argmax(probs[1]))] == label
    acc = {k: round(v / n, 3) if n else None for k, v in right.items()}
    print(f"   the model's accuracy on the rolled and upright faces BlazeFace found ({n}; "
          f"FER2013 labels): crop turned upright by the eye line {acc['aligned']}, not "
          f"{acc['not aligned']}")
    return {"faces": n, **acc}


def fit(paths: list[Path], seed: int) -> dict:
    """BlazeFace's own box (before :data:`blazeface.FIT`) against the pasted face square,
    FER2013 training faces of 60-170 px: the scale and shift that turn one into the other
    (medians), and how its size changes when the network sees a region twice the face."""
    pyrng = random.Random(seed)
    out = {}
    for name in ("front", "back"):
        det = make_detector(DetectorConfig(kind="blazeface", blazeface=name, align=False,
                                           min_face=0))
        scales, shifts, region = [], [], []
        progress = bar(len(paths), desc=f"fit {name}", unit="face")
        for p in paths:
            progress.update(1)
            face = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            if face is None or face.std() < 30:
                continue
            side = pyrng.randint(60, 170)
            x, y = pyrng.randint(0, W - side), pyrng.randint(0, H - side)
            frame = np.full((H, W), float(pyrng.randint(60, 160)), np.float32)
            frame[y:y + side, x:x + side] = cv2.resize(face, (side, side))
            img = _jpeg(frame)
            truth = Box(x, y, side, side)
            rows = det._run(det._rgb(img), 0.0, (H - W) / 2, float(W))  # as detect() does
            own = [(r, Box(round(r[1] - r[3] / 2), round(r[2] - r[4] / 2), round(r[3]),
                           round(r[4]))) for r in rows]
            own = [(r, b) for r, b in own if b.iou(truth) > 0.3]
            if not own:
                continue
            r, b = max(own, key=lambda rb: rb[1].iou(truth))
            scales.append(side / max(r[3], r[4]))
            shifts.append((truth.center[1] - r[2]) / r[4])
            fitted = det._box(r)
            near = [n for n in det.detect_region(img, fitted) if n.iou(fitted) > 0.1]
            region.append(near[0].w / fitted.w if near else 0.0)
        progress.close()
        scale, shift = statistics.median(scales), statistics.median(shifts)
        steady = [v for v in region if v > 0]
        spread = np.percentile(np.asarray(scales) / scale, [10, 90])  # the fitted square / truth
        out[name] = {"faces": len(scales), "fit": [round(scale, 3), round(shift, 3)],
                     "square_over_truth_p10_p90": [round(float(v), 2) for v in 1 / spread[::-1]],
                     "region_size_ratio_p10_p50_p90": [round(float(v), 2) for v in
                                                       np.percentile(steady, [10, 50, 90])]}
        print(f"   {name}: {len(scales)} faces; face square = BlazeFace's box x {scale:.3f}, "
              f"centre moved by {shift:+.3f} of its height: FIT = ({scale:.3f}, {shift:.3f}); "
              "the fitted square against the true one, p10/p90: " + "/".join(
                  f"{v:.2f}" for v in out[name]["square_over_truth_p10_p90"])
              + "; on a region twice the face, the box's size against the whole frame's, "
              "p10/p50/p90: " + "/".join(f"{v:.2f}" for v in
                                         out[name]["region_size_ratio_p10_p50_p90"]))
    out["following"] = following(paths, seed)
    out["reliable"] = reliable(paths, seed)
    return out


def following(paths: list[Path], seed: int) -> dict:
    """The face :data:`blazeface.FOLLOW` finds on a region :data:`blazeface.REGION` times a
    face found by the whole frame's pass, against that face: IoU and size (medians), and how
    often it finds none (faces of 30-150 px in 320x240 frames)."""
    from multinet_emotion.runtime import blazeface

    pyrng = random.Random(seed)
    det = make_detector(DetectorConfig(kind="blazeface", min_face=20))
    ious, sizes, missed = [], [], 0
    for p in paths:
        face = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if face is None:
            continue
        side = pyrng.randint(30, 150)
        x, y = pyrng.randint(0, W - side), pyrng.randint(0, H - side)
        frame = np.full((H, W), float(pyrng.randint(60, 160)), np.float32)
        frame[y:y + side, x:x + side] = cv2.resize(face, (side, side))
        img = _jpeg(frame)
        whole = [b for b in det.detect(img) if b.iou(Box(x, y, side, side)) > 0.3]
        if not whole:
            continue
        again = [b for b in det._region(det._rgb(img), whole[0], blazeface.REGION,
                                        blazeface.FOLLOW) if b.iou(whole[0]) > 0.3]
        if not again:
            missed += 1
            continue
        ious.append(again[0].iou(whole[0]))
        sizes.append(again[0].w / whole[0].w)
    n = len(ious) + missed
    out = {"faces": n, "missed": missed, "iou_median": round(statistics.median(ious), 2),
           "size_ratio_median": round(statistics.median(sizes), 3)}
    print(f"   following ({blazeface.FOLLOW} model on a region {blazeface.REGION:g} times the "
          f"face): {n} faces the whole frame's pass found; missed {missed}; against the whole "
          f"frame's box, IoU {out['iou_median']:.2f} and size x{out['size_ratio_median']:.3f} "
          "(medians)")
    return out


def reliable(paths: list[Path], seed: int, n: int = 150) -> dict:
    """Faces found by one pass, by the share of the network's square a face fills
    (:data:`blazeface.RELIABLE`): FER2013 faces pasted on a plain square twice the input."""
    from multinet_emotion.runtime import blazeface

    faces = [f for p in paths[:n] if (f := cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)) is not None]
    out: dict = {}
    for name, (_file, size, _digest) in blazeface.MODELS.items():
        det = make_detector(DetectorConfig(kind="blazeface", blazeface=name, min_face=0))
        rng = random.Random(seed)
        found = {}
        for share in (0.06, 0.08, 0.10, 0.12, 0.14, 0.17, 0.20, 0.25):
            s, hit = int(round(share * size * 2)), 0
            for f in faces:
                frame = np.full((2 * size, 2 * size), rng.randint(60, 180), np.uint8)
                x, y = rng.randint(0, 2 * size - s), rng.randint(0, 2 * size - s)
                frame[y:y + s, x:x + s] = cv2.resize(f, (s, s), interpolation=cv2.INTER_AREA)
                boxes = det.detect(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
                hit += any(b.iou(Box(x, y, s, s)) > 0.3 for b in boxes)
            found[f"{share:.2f}"] = round(100 * hit / len(faces), 1)
        out[name] = found
        print(f"   {name}: faces found by one pass, by the share of the square a face fills: "
              + ", ".join(f"{k} {v:.0f}%" for k, v in found.items()))
    return out
