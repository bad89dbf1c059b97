/* Small chart helpers drawn on <canvas>: no libraries, no network. */
"use strict";
/* EMOTIONS, COLORS and ADJECTIVES come from the server (/static/emotions.js, loaded first). */

function fitCanvas(canvas, height) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.parentElement.clientWidth || 400;
  canvas.style.height = height + "px";
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return {ctx, width, height};
}

function clockLabel(t) {
  const d = new Date(t * 1000);
  return d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});
}

/* Stacked area of emotion probabilities over time. points: [{t, probs|null}] */
function drawStacked(canvas, points, opts = {}) {
  const {ctx, width, height} = fitCanvas(canvas, opts.height || 170);
  const pad = {l: 34, r: 8, t: 8, b: 20};
  const w = width - pad.l - pad.r, h = height - pad.t - pad.b;
  ctx.clearRect(0, 0, width, height);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#5f6b7a";
  ctx.strokeStyle = "#dde2e8";
  for (const v of [0, 0.5, 1]) {
    const y = pad.t + h * (1 - v);
    ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(pad.l + w, y); ctx.stroke();
    ctx.fillText(Math.round(v * 100) + "%", 2, y + 4);
  }
  const t1 = opts.until || (points.length ? points[points.length - 1].t : Date.now() / 1000);
  const t0 = opts.since || (points.length ? points[0].t : t1 - 60);
  const span = Math.max(1, t1 - t0);
  const x = t => pad.l + w * (t - t0) / span;
  ctx.fillText(clockLabel(t0), pad.l, height - 5);
  const end = clockLabel(t1);
  ctx.fillText(end, pad.l + w - ctx.measureText(end).width, height - 5);
  if (!points.length) {
    ctx.fillText(opts.empty || "no data yet", pad.l + w / 2 - 30, pad.t + h / 2);
    return;
  }
  const maxGap = opts.maxGap || span / 10;
  // split into runs of consecutive points with a face and no long gap
  const runs = [];
  let run = [];
  for (let i = 0; i < points.length; i++) {
    const p = points[i];
    const gap = i > 0 && p.t - points[i - 1].t > maxGap;
    if (!p.probs || gap) { if (run.length) runs.push(run); run = []; }
    if (p.probs) run.push(p);
  }
  if (run.length) runs.push(run);
  for (const r of runs) {
    if (r.length === 1) r.push({t: r[0].t + Math.min(span / 100, maxGap), probs: r[0].probs});
    let base = r.map(() => 0);
    for (const e of EMOTIONS) {
      const top = r.map((p, i) => base[i] + (p.probs[e] || 0));
      ctx.beginPath();
      r.forEach((p, i) => { const yy = pad.t + h * (1 - top[i]);
                            i ? ctx.lineTo(x(p.t), yy) : ctx.moveTo(x(p.t), yy); });
      for (let i = r.length - 1; i >= 0; i--) ctx.lineTo(x(r[i].t), pad.t + h * (1 - base[i]));
      ctx.closePath();
      ctx.fillStyle = COLORS[e];
      ctx.globalAlpha = 0.85;
      ctx.fill();
      ctx.globalAlpha = 1;
      base = top;
    }
  }
  if (opts.faceShare) {  // dashed line: share of learners with a face in view
    ctx.strokeStyle = "#17324d"; ctx.setLineDash([4, 3]); ctx.beginPath();
    points.forEach((p, i) => { const yy = pad.t + h * (1 - (p.face_share ?? 1));
                               i ? ctx.lineTo(x(p.t), yy) : ctx.moveTo(x(p.t), yy); });
    ctx.stroke(); ctx.setLineDash([]);
  }
}

/* Grouped horizontal bars. rows: [{label, values: {name: number}}], series: [{name, color}] */
function drawBars(canvas, rows, series, opts = {}) {
  const rowH = 16 * series.length + 14;
  const {ctx, width, height} = fitCanvas(canvas, Math.max(60, rows.length * rowH + 24));
  ctx.clearRect(0, 0, width, height);
  ctx.font = "12px system-ui, sans-serif";
  if (!rows.length) {
    ctx.fillStyle = "#5f6b7a";
    ctx.fillText(opts.empty || "nothing yet", 10, 30);
    return;
  }
  const labelW = 120, w = width - labelW - 40;
  const max = Math.max(1, ...rows.flatMap(r => series.map(s => r.values[s.name] || 0)));
  rows.forEach((r, i) => {
    const y0 = 8 + i * rowH;
    ctx.fillStyle = "#1d2430";
    ctx.fillText(r.label, 4, y0 + rowH / 2);
    series.forEach((s, j) => {
      const v = r.values[s.name] || 0;
      const y = y0 + j * 16;
      ctx.fillStyle = s.color;
      ctx.fillRect(labelW, y, Math.max(1, w * v / max), 12);
      ctx.fillStyle = "#5f6b7a";
      ctx.fillText(String(v), labelW + w * v / max + 4, y + 10);
    });
  });
}

/* items: [[name, color, {dashed}?]]; a dashed series gets a dashed line as its swatch. */
function legendHTML(items) {
  return items.map(([name, color, opts]) => opts && opts.dashed
    ? `<span><span class="swatch dashed" style="border-top-color:${color}"></span>${escapeHTML(name)}</span>`
    : `<span><span class="swatch" style="background:${color}"></span>${escapeHTML(name)}</span>`).join("");
}

function probBarsHTML(probs) {
  return EMOTIONS.map(e => {
    const p = probs ? (probs[e] || 0) : 0;
    return `<div class="bar"><span><span class="swatch" style="background:${COLORS[e]}"></span>${e}</span>` +
      `<span class="track"><span class="fill" style="display:block;width:${(p * 100).toFixed(0)}%;background:${COLORS[e]}"></span></span>` +
      `<span>${(p * 100).toFixed(0)}%</span></div>`;
  }).join("");
}

function stackHTML(probs) {
  if (!probs) return '<div class="stack" style="background:#eee"></div>';
  return '<div class="stack">' + EMOTIONS.map(e =>
    `<span title="${e} ${(probs[e] * 100).toFixed(0)}%" style="width:${(probs[e] * 100).toFixed(1)}%;background:${COLORS[e]}"></span>`
  ).join("") + "</div>";
}

function escapeHTML(s) {
  return String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
                                                   '"': "&quot;", "'": "&#39;"}[c]));
}

/* Bidirectional-text controls (embeddings, overrides, isolates, marks): a name with them can
   display reversed ("evil" shown as "live"), so they are removed from every shown name. */
const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069\u200E\u200F\u061C]/g;
function plainName(s) {
  return String(s ?? "").replace(BIDI_CONTROLS, "");
}

/* A name as HTML: without bidi controls, escaped, isolated from the text around it, with
   the full name as its title (long names are cut short by the CSS). */
function nameHTML(s) {
  const name = escapeHTML(plainName(s));
  return `<bdi class="person" title="${name}">${name}</bdi>`;
}
