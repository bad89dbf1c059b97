/* The learner page: class code, consent (before anything is stored), sign-up, camera frames
   over a WebSocket, suggestions. */
"use strict";
const $ = id => document.getElementById(id);
const KEY = "multinet.learner";
const state = {config: null, consent: null, joining: null, me: null, session: null, ws: null, stream: null, timer: null,
               inFlight: false, cameraOn: false, analysis: false, timeline: [], recs: {},
               retry: 0, closing: false, frames: 0, errors: 0, starting: false,
               reconnectTimer: null,
               // where pictures are analysed: "browser" (analysis.js), "server" or null (not
               // chosen yet); GET /api/analysis says what the server offers
               mode: null, info: null, analyser: null, face: null, follower: null,
               fallback: ""};

function show(id) {
  for (const s of ["signup", "consent", "declined", "main"]) $(s).classList.toggle("hidden", s !== id);
}
function notice(text, kind = "notice") {
  const el = $("notice");
  el.className = kind;
  el.textContent = text;
  el.classList.toggle("hidden", !text);
}
function status(text, detail = "") {
  $("status").textContent = text;
  $("status").title = detail;  // technical details (e.g. how long analysis took) stay out of the way
}
function who() {
  $("who").innerHTML = state.me ? nameHTML(state.me.name) +
    (state.me.class_name ? " · " + nameHTML(state.me.class_name) : "") : "";
}


/* The learner's token no longer works (their data was deleted, or the token replaced). */
class SignedOut extends Error {}

/* Stop everything, forget the learner and what the page showed, back to sign-up. */
function signedOut(message, kind = "error") {
  state.closing = true;
  cameraOff();
  clearTimeout(state.reconnectTimer);
  if (state.ws) { state.ws.onclose = state.ws.onmessage = null; state.ws.close(); }
  Object.assign(state, {ws: null, me: null, session: null, timeline: [], recs: {}, retry: 0,
                        inFlight: false, analysis: false});
  pageLocal.removeItem(KEY);
  outage(false);
  notice("");
  $("now").classList.remove("stale");
  $("current-label").textContent = "—";
  $("current-label").style.color = "";
  $("current-note").textContent = "";
  $("current-bars").innerHTML = probBarsHTML(null);
  $("recs").innerHTML = "";
  $("no-recs").classList.remove("hidden");
  $("data-status").textContent = "";
  $("name").value = "";
  state.joining = null;
  signupMode();
  who();
  drawTimeline();
  const el = $("signup-message");
  el.className = kind;
  el.textContent = message;
  el.classList.toggle("hidden", !message);
  $("signup-error").classList.add("hidden");
  show("signup");
  state.closing = false;
}

/* A click handler whose failures are said on the page, never left uncaught. */
function guarded(fn) {
  return async (...args) => {
    try {
      await fn(...args);
    } catch (e) {
      if (!(e instanceof SignedOut) && !(e instanceof Refused)) {
        notice("Something went wrong: " + e.message, "error");
      }
    }
  };
}

async function api(path, opts = {}) {
  const headers = Object.assign({"Content-Type": "application/json"}, opts.headers || {});
  if (state.me) headers.Authorization = "Bearer " + state.me.token;
  const r = await fetch(path, Object.assign({}, opts, {headers}));
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
  if (r.status === 401 && headers.Authorization && state.me) {
    signedOut("You are signed out: your sign-in is no longer valid (" +
              ((body && body.detail) || "token not accepted") + "). Sign up again to continue.");
    throw new SignedOut("signed out");
  }
  if (!r.ok) {
    const err = new Error((body && body.detail) || r.statusText);
    err.status = r.status;
    throw err;
  }
  return body;
}

async function init() {
  [state.config, state.consent] = await Promise.all([api("/api/config"), api("/api/consent")]);
  $("consent-items").innerHTML = state.consent.items.map(i =>
    `<li><b>${escapeHTML(i.title)}:</b> ${escapeHTML(i.text)}</li>`).join("");
  $("legend").innerHTML = legendHTML(EMOTIONS.map(e => [e, COLORS[e]]));
  $("current-bars").innerHTML = probBarsHTML(null);
  if (ltiLaunch()) return drawTimeline();  // from a learning platform: consent first
  const saved = JSON.parse(pageLocal.getItem(KEY) || "null");
  if (saved && saved.token) {
    state.me = saved;
    try {
      await api("/api/me");
    } catch (e) {
      if (e instanceof SignedOut) return drawTimeline();  // already back at sign-up, said why
      state.me = null;
      pageLocal.removeItem(KEY);
    }
  }
  who();
  signupMode();
  show("signup");
  drawTimeline();
}


$("signup-form").addEventListener("submit", checkCode);
$("decline").addEventListener("click", decline);
$("back").addEventListener("click", () => { signupMode(); show("signup"); });

async function startSession(source) {
  try {
    state.session = await api("/api/sessions", {method: "POST", body: JSON.stringify(
      {join_code: state.me.join_code, source})});
  } catch (e) {
    if (e.status === 404 || e.status === 410) {  // the code changed or expired meanwhile
      refused("Could not join: " + e.message);
      throw new Refused(e.message);
    }
    throw e;
  }
  const cur = await api(`/api/sessions/${state.session.id}/recommendation`);
  if (cur.recommendation) showRec(cur.recommendation);
}

$("agree").addEventListener("click", guarded(async () => {
  setCameraButton(true);  // "Starting camera…" from the first moment
  status("starting the camera…");
  try {
    await agreeAndStart("camera");
  } catch (e) {
    setCameraButton();
    throw e;
  }
  state.closing = false;
  connect();
  await cameraOn();
}));

$("no-camera").addEventListener("click", guarded(async () => {
  await agreeAndStart("camera");
  state.closing = false;
  connect();
  notice("You are learning without the camera. No emotions are estimated, so there are no " +
         "camera-based suggestions. You can turn the camera on at any time.");
  setCameraButton();
  status("camera off");
}));

function setCameraButton(starting = false) {
  const button = $("camera-toggle");
  button.disabled = starting;
  button.textContent = starting ? "Starting camera…"
    : state.cameraOn ? "Turn camera off" : "Turn camera on";
}

$("camera-toggle").addEventListener("click", guarded(() =>
  state.cameraOn ? cameraOff() : cameraOn()));

async function cameraOn() {
  setCameraButton(true);
  if (!state.info) state.info = await api("/api/analysis");
  if (!state.info.browser && !state.info.server) {  // nothing could use the picture: keep it off
    analysisUnavailable();
    setCameraButton();
    status("camera off — analysis unavailable");
    return;
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    notice("This browser gives no access to a camera here. You can keep learning without it.");
    setCameraButton();
    status("no camera");
    return;
  }
  if (cameraBlockedByFrame()) {
    notice(FRAME_BLOCKS_CAMERA, "error");
    setCameraButton();
    status("no camera: not allowed in this frame");
    return;
  }
  setCameraButton(true);
  status("starting the camera…");
  try {
    state.stream = await navigator.mediaDevices.getUserMedia(
      {video: {width: {ideal: 640}, height: {ideal: 480}}, audio: false});
  } catch (e) {
    const why = e.name === "NotAllowedError" ? "camera permission was not given"
      : e.name === "NotFoundError" ? "no camera was found" : "the camera could not start";
    notice(`No camera: ${why}. You can keep learning without it; nothing else changes.`);
    status("no camera");
    state.cameraOn = false;
    setCameraButton();
    return;
  }
  $("preview").srcObject = state.stream;
  if (!state.mode) state.mode = await chooseMode(state.info);
  if (!state.mode) {
    state.stream.getTracks().forEach(t => t.stop());
    state.stream = null;
    $("preview").srcObject = null;
    analysisUnavailable();
    setCameraButton();
    status("camera off — analysis unavailable");
    return;
  }
  state.cameraOn = true;
  setCameraButton();
  notice("");
  status("camera on — waiting for the first reading");
  clearInterval(state.timer);
  state.timer = setInterval(sendFrame, 1000 / (state.config.frame_rate || 2));
}

function cameraOff() {
  clearInterval(state.timer);
  state.timer = null;
  if (state.stream) state.stream.getTracks().forEach(t => t.stop());
  state.stream = null;
  $("preview").srcObject = null;
  state.cameraOn = false;
  setCameraButton();
  $("now").classList.add("stale");  // what is shown is no longer current
  status("camera off — nothing is analysed");
}

/* In "auto", a browser slower than this to load the analysis has the server analyse. */
const LOAD_TIMEOUT_MS = 60000;

/* Where this page analyses pictures: "browser" when the server offers it and this browser
   can load it (in "auto" within LOAD_TIMEOUT_MS), else "server" when the server analyses
   frames, else null. The page says which. */
async function chooseMode(info) {
  if (info.browser && typeof WebAssembly === "object") {
    showMode("loading", "Loading the analysis into this browser…");
    try {
      let timer;
      const late = new Promise((_, reject) => {
        if (info.server) timer = setTimeout(() => reject(new Error("it took too long to load")),
                                            LOAD_TIMEOUT_MS);
      });
      state.analyser = await Promise.race([BrowserAnalysis.ready(), late]);
      clearTimeout(timer);
      state.face = new BrowserAnalysis.FaceTrack(info.browser);
      state.follower = BrowserAnalysis.follower(state.analyser);
      showMode("browser", "Analysed on this device: no picture leaves it, only the six " +
               "numbers of each reading are sent.");
      return "browser";
    } catch (e) {
      state.fallback = e.message;
      if (!info.server) {
        state.config.analysis_note = "this browser could not run the analysis: " + e.message;
        showMode("", "");
        return null;
      }
    }
  } else if (info.browser) {
    state.fallback = "this browser cannot run WebAssembly";
  }
  if (!info.server) return null;
  showMode("server", "Analysed on the server: each picture is sent, analysed in its memory " +
           "and thrown away at once." +
           (state.fallback ? ` (Not on this device: ${state.fallback}.)` : ""));
  return "server";
}

function showMode(mode, text) {
  document.body.dataset.analysis = mode;
  $("analysis-mode").textContent = text;
  $("analysis-mode").classList.toggle("hidden", !text);
}

const grab = document.createElement("canvas");
const here = document.createElement("canvas");
/* The video's picture on ``canvas``, scaled to the server's frame width (never enlarged);
   its 2D context. */
function drawScaled(canvas, video, contextOptions) {
  const width = Math.min(state.config.frame_width || 320, video.videoWidth);
  canvas.width = width;
  canvas.height = Math.round(video.videoHeight * width / video.videoWidth);
  const ctx = canvas.getContext("2d", contextOptions);
  ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
  return ctx;
}
function sendFrame() {
  const video = $("preview");
  const ws = state.ws;
  if (!state.cameraOn || !state.mode || (state.mode === "server" && !state.analysis) || !ws ||
      ws.readyState !== 1 || state.inFlight || !video.videoWidth) return;
  if (state.mode === "browser") return analyseHere(video);
  drawScaled(grab, video);
  state.inFlight = true;
  grab.toBlob(blob => {
    if (!blob || !state.ws || state.ws.readyState !== 1) { state.inFlight = false; return; }
    blob.arrayBuffer().then(buf => { state.ws.send(buf); state.frames++; });
  }, "image/jpeg", 0.7);
}

/* Analyse the video's picture in this browser and send only the (smoothed) probabilities
   and the label shown (the runtime's tracker and label filter, step for step: FaceTrack):
   one sample message, answered by a result like a frame. A face not confirmed yet is sent
   as no face, as the server's detector reports it. The picture is scaled to the
   width a frame sent to the server has (frame_width), so both modes analyse the same
   picture, and the browser converts and copies a quarter of a 640x480 camera's pixels. */
async function analyseHere(video) {
  state.inFlight = true;
  try {
    const ctx = drawScaled(here, video, {willReadFrequently: true});
    const {faces, ms} = await state.analyser.analyse(ctx.getImageData(0, 0, here.width,
                                                                        here.height), 1,
                                                     state.follower);
    const shown = state.face.update(faces.length ? faces[0].probs : null,
                                    performance.now() / 1000);
    const labels = state.analyser.cfg.labels;
    const p = shown && shown.probs;
    const sample = p ? {type: "sample", face: true, confidence: Math.max(...p),
                        probs: Object.fromEntries(labels.map((e, i) => [e, p[i]])),
                        label: shown.label === null ? null : labels[shown.label]}
      : {type: "sample", face: false};
    if (!state.cameraOn || !state.ws || state.ws.readyState !== 1) {
      state.inFlight = false;
      return;
    }
    state.ws.send(JSON.stringify(sample));
    state.frames++;
    state.localMs = ms.total;
    const now = performance.now();
    state.analysedAt = (state.analysedAt || []).filter(x => x > now - 5000).concat([now]);
  } catch (e) {
    state.inFlight = false;
    status("this picture could not be analysed: " + e.message);
  }
}

function analysisUnavailable() {
  state.config.analysis = false;
  if (state.info) state.info.server = false;
  if (state.mode === "server") state.mode = null;
  if (state.cameraOn) cameraOff();
  notice("Emotion analysis is unavailable on this server right now (" +
         (state.config.analysis_note || "no model") + "), so your camera stays off. " +
         "You can keep learning.");
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws/learn`);
  state.ws = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify({type: "hello", token: state.me.token, session_id: state.session.id}));
  };
  ws.onmessage = ev => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "ready") {
      state.retry = 0;
      outage(false);  // connected again (the readings stay grey until a fresh one)
      state.analysis = msg.analysis;
      if (!msg.analysis && state.mode === "server") analysisUnavailable();
    } else if (msg.type === "result") {
      state.inFlight = false;
      onResult(msg);
    } else if (msg.type === "recommendation") {
      showRec(msg.recommendation);
    } else if (msg.type === "error") {
      state.inFlight = false;
      state.errors++;
      if (state.cameraOn) status("frame skipped: " + msg.message);
    }
  };
  ws.onclose = ev => {
    state.inFlight = false;
    if (state.closing || state.ws !== ws) return;
    const wait = Math.min(10000, 500 * 2 ** state.retry++);
    if (ev.code === 1008) {  // refused: if the token no longer works, api() signs out
      api("/api/me").then(() => reconnect(wait), e => { if (!(e instanceof SignedOut)) reconnect(wait); });
    } else {
      reconnect(wait);
    }
  };
}

function reconnect(wait) {
  if (state.closing || !state.me) return;
  outage(true);
  status("reconnecting…");
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = setTimeout(connect, wait);
}

/* While the server cannot be reached: a banner says so, and the readings go grey. */
function outage(on) {
  const el = $("outage");
  el.textContent = on ? "The connection to the server is lost. Reconnecting… What you see " +
    "below is out of date until it is back." : "";
  el.classList.toggle("hidden", !on);
  if (on) $("now").classList.add("stale");
}

function onResult(msg) {
  if (!state.cameraOn) return;  // a late answer to a frame sent before the camera went off
  $("now").classList.remove("stale");  // fresh again
  const cur = msg.current;
  const now = Date.now() / 1000;
  if (cur && cur.face && cur.probs) {
    const reading = !cur.label;  // a face that came into view: not read long enough yet
    $("current-label").textContent = reading ? "reading…" : cur.label;
    $("current-label").style.color = reading ? "" : COLORS[cur.label];
    const pct = `${((cur.share || 0) * 100).toFixed(0)}%`;  // as the bars write it
    $("current-note").textContent = reading ? "(looking at your expression)"
      : `(${cur.label} ${pct})`;
    $("current-note").title = reading ? "" : `the model gives ${cur.label} ${pct} of its ` +
      "reading (smoothed over the last moments)";
    $("current-bars").innerHTML = probBarsHTML(cur.probs);
    state.timeline.push({t: now, probs: cur.probs});
    status("camera on — your emotions are being estimated", speedNote(msg));
  } else {
    $("current-label").textContent = "no face";
    $("current-label").style.color = "";
    $("current-note").textContent = "(nobody in view: nothing is estimated)";
    $("current-bars").innerHTML = probBarsHTML(null);
    state.timeline.push({t: now, probs: null});
    status("camera on — nobody in view", speedNote(msg));
  }
  state.timeline = state.timeline.filter(p => p.t >= now - 120);
}

/* How fast the analysis runs: in this browser, its own time a picture and pictures a
   second; on the server, the server's time for the frame. */
function speedNote(msg) {
  if (state.mode === "browser") {
    const times = state.analysedAt || [];
    const fps = times.length > 1 ? (times.length - 1) * 1000 / (times[times.length - 1] - times[0])
      : 0;
    return `analysed on this device in ${Math.round(state.localMs || 0)} ms` +
      (fps ? `, ${fps.toFixed(1)} pictures a second` : "");
  }
  return `last analysis took ${msg.ms} ms on the server`;
}

function drawTimeline() {
  const now = Date.now() / 1000;
  drawStacked($("timeline"), state.timeline, {since: now - 120, until: now, height: 120,
              maxGap: 5, empty: "your emotions will appear here"});
}
setInterval(drawTimeline, 1000);

function showRec(rec) {
  state.recs[rec.id] = rec;
  $("no-recs").classList.add("hidden");
  if (document.querySelector(`.rec[data-id="${rec.id}"]`)) return;
  const el = document.createElement("div");
  el.className = "rec";
  el.dataset.id = rec.id;
  const minutes = rec.item.duration ? ` · ${Math.max(1, Math.round(rec.item.duration / 60))} min` : "";
  el.innerHTML = `
    <div class="kind">${escapeHTML(rec.kind.replace(/_/g, " "))}${minutes}</div>
    <div class="title">${escapeHTML(rec.item.title)}</div>
    <div class="reason">${escapeHTML(rec.reason)}. <span class="muted">${escapeHTML(rec.evidence.why_this_kind || "")}</span></div>
    <div class="row actions">
      <button class="rec-accept">Open it</button>
      <button class="rec-dismiss secondary">Not now</button>
      <button class="thumb-up secondary" title="This helped" aria-pressed="false">&#9650; Helped</button>
      <button class="thumb-down secondary" title="This did not help" aria-pressed="false">&#9660; Did not help</button>
    </div>
    <div class="muted rec-status"></div>`;
  el.querySelector(".rec-accept").onclick = () => respond(el, rec, "accept");
  el.querySelector(".rec-dismiss").onclick = () => respond(el, rec, "dismiss");
  el.querySelector(".thumb-up").onclick = () => thumbs(el, rec, "up");
  el.querySelector(".thumb-down").onclick = () => thumbs(el, rec, "down");
  $("recs").prepend(el);
}

async function respond(el, rec, action) {
  try {
    await api(`/api/recommendations/${rec.id}/${action}`, {method: "POST"});
    el.classList.add("done");
    el.querySelector(".rec-accept").disabled = el.querySelector(".rec-dismiss").disabled = true;
    el.querySelector(".rec-status").textContent = action === "accept"
      ? "Opened. Did it help? Tell us with Helped or Did not help." : "Dismissed.";
    if (action === "accept" && /^(https?:\/\/|\/)/.test(rec.item.url)) {
      window.open(rec.item.url, "_blank", "noopener");
    }
  } catch (e) {
    el.querySelector(".rec-status").textContent = e.message;
  }
}

async function thumbs(el, rec, value) {
  try {
    await api(`/api/recommendations/${rec.id}/feedback`, {method: "POST",
                                                          body: JSON.stringify({value})});
    el.classList.add("done");
    for (const which of ["up", "down"]) {
      const button = el.querySelector(".thumb-" + which);
      button.setAttribute("aria-pressed", String(which === value));
      button.classList.toggle("pressed", which === value);
    }
    el.querySelector(".rec-status").textContent = "Thanks — you said this " +
      (value === "up" ? "helped" : "did not help") + ". It tunes future suggestions.";
  } catch (e) {
    el.querySelector(".rec-status").textContent = e.message;
  }
}

$("export").addEventListener("click", guarded(async () => {
  const data = await api("/api/me/export");
  const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)],
                                           {type: "application/json"}));
  const a = Object.assign(document.createElement("a"),
                          {href: url, download: "multinet-emotion-my-data.json"});
  a.click();
  URL.revokeObjectURL(url);
  $("data-status").textContent = "Downloaded.";
}));

$("delete").addEventListener("click", guarded(async () => {
  if (!confirm("Delete everything stored about you? This cannot be undone.")) return;
  state.closing = true;
  cameraOff();
  if (state.ws) state.ws.close();
  let r;
  try {
    r = await api("/api/me", {method: "DELETE"});
  } catch (e) {
    state.closing = false;
    if (!(e instanceof SignedOut)) reconnect(0);
    throw e;
  }
  const count = (n, what) => `${n} ${what}${n === 1 ? "" : "s"}`;
  signedOut(`All your data was deleted (${count(r.deleted.samples, "emotion sample")}, ` +
            `${count(r.deleted.sessions, "session")}, ` +
            `${count(r.deleted.recommendations, "suggestion")}). To continue, sign up again.`,
            "notice");
}));

$("end").addEventListener("click", guarded(endSession));
async function endSession() {
  state.closing = true;
  cameraOff();
  if (state.ws) state.ws.close();
  if (state.session && state.me) {
    await api(`/api/sessions/${state.session.id}/end`, {method: "POST"}).catch(() => {});
  }
  $("data-status").textContent = "Session ended. Reload the page to start again.";
}
window.addEventListener("pagehide", () => {
  if (state.session && state.me && !state.closing) {
    fetch(`/api/sessions/${state.session.id}/end`, {method: "POST", keepalive: true,
          headers: {Authorization: "Bearer " + state.me.token}});
  }
});

init().catch(e => notice("The page could not start: " + e.message, "error"));
