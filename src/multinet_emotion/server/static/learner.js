/* The learner page: sign-up, consent, camera frames over a WebSocket, suggestions. */
"use strict";
const $ = id => document.getElementById(id);
const KEY = "multinet.learner";
const state = {config: null, me: null, session: null, ws: null, stream: null, timer: null,
               inFlight: false, cameraOn: false, analysis: false, timeline: [], recs: {},
               retry: 0, closing: false, frames: 0, errors: 0};

function show(id) {
  for (const s of ["signup", "consent", "main"]) $(s).classList.toggle("hidden", s !== id);
}
function notice(text, kind = "notice") {
  const el = $("notice");
  el.className = kind;
  el.textContent = text;
  el.classList.toggle("hidden", !text);
}
function status(text) { $("status").textContent = text; }

async function api(path, opts = {}) {
  const headers = Object.assign({"Content-Type": "application/json"}, opts.headers || {});
  if (state.me) headers.Authorization = "Bearer " + state.me.token;
  const r = await fetch(path, Object.assign({}, opts, {headers}));
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
  if (!r.ok) {
    const err = new Error((body && body.detail) || r.statusText);
    err.status = r.status;
    throw err;
  }
  return body;
}

async function init() {
  state.config = await api("/api/config");
  $("consent-rate").textContent = state.config.frame_rate;
  $("consent-retention").textContent = state.config.retention_days;
  $("legend").innerHTML = legendHTML(EMOTIONS.map(e => [e, COLORS[e]]));
  $("current-bars").innerHTML = probBarsHTML(null);
  const saved = JSON.parse(localStorage.getItem(KEY) || "null");
  if (saved && saved.token) {
    state.me = saved;
    try { await api("/api/me"); } catch (e) { state.me = null; localStorage.removeItem(KEY); }
  }
  if (state.me) {
    $("who").textContent = state.me.name + " · class " + state.me.class_id;
    show("consent");
  } else {
    show("signup");
  }
  drawTimeline();
}

$("signup-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  $("signup-error").classList.add("hidden");
  try {
    const name = $("name").value.trim();
    const classId = $("class-id").value.trim() || "default";
    const r = await api("/api/learners", {method: "POST", body: JSON.stringify({name})});
    state.me = {token: r.token, learner_id: r.learner_id, name: r.name, class_id: classId};
    localStorage.setItem(KEY, JSON.stringify(state.me));
    $("who").textContent = state.me.name + " · class " + classId;
    show("consent");
  } catch (e) {
    $("signup-error").textContent = "Could not sign up: " + e.message;
    $("signup-error").classList.remove("hidden");
  }
});

async function startSession(source) {
  try {
    state.session = await api("/api/sessions", {method: "POST", body: JSON.stringify(
      {class_id: state.me.class_id || "default", source})});
  } catch (e) {
    if (e.status === 422) {  // a class code that is not valid: fall back, say so
      notice("The class code is not valid; using the default class.");
      state.me.class_id = "default";
      localStorage.setItem(KEY, JSON.stringify(state.me));
      return startSession(source);
    }
    throw e;
  }
  const cur = await api(`/api/sessions/${state.session.id}/recommendation`);
  if (cur.recommendation) showRec(cur.recommendation);
}

$("agree").addEventListener("click", async () => {
  show("main");
  await startSession("camera");
  connect();
  await cameraOn();
});

$("no-camera").addEventListener("click", async () => {
  show("main");
  await startSession("camera");
  connect();
  notice("You are learning without the camera. No emotions are estimated, so there are no " +
         "camera-based suggestions. You can turn the camera on at any time.");
  setCameraButton();
  status("camera off");
});

function setCameraButton() {
  $("camera-toggle").textContent = state.cameraOn ? "Turn camera off" : "Turn camera on";
}

$("camera-toggle").addEventListener("click", () => state.cameraOn ? cameraOff() : cameraOn());

async function cameraOn() {
  if (!state.config.analysis) {  // nothing could use the picture: keep the camera off
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
  state.cameraOn = true;
  setCameraButton();
  notice("");
  status("camera on");
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
  status("camera off — nothing is analysed");
}

const grab = document.createElement("canvas");
function sendFrame() {
  const video = $("preview");
  const ws = state.ws;
  if (!state.cameraOn || !state.analysis || !ws || ws.readyState !== 1 || state.inFlight ||
      !video.videoWidth) return;
  const width = Math.min(state.config.frame_width || 320, video.videoWidth);
  grab.width = width;
  grab.height = Math.round(video.videoHeight * width / video.videoWidth);
  grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
  state.inFlight = true;
  grab.toBlob(blob => {
    if (!blob || !state.ws || state.ws.readyState !== 1) { state.inFlight = false; return; }
    blob.arrayBuffer().then(buf => { state.ws.send(buf); state.frames++; });
  }, "image/jpeg", 0.7);
}

function analysisUnavailable() {
  state.config.analysis = false;
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
      state.analysis = msg.analysis;
      if (!msg.analysis && (state.cameraOn || state.config.analysis)) analysisUnavailable();
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
  ws.onclose = () => {
    state.inFlight = false;
    if (state.closing) return;
    const wait = Math.min(10000, 500 * 2 ** state.retry++);
    status("reconnecting…");
    setTimeout(connect, wait);
  };
}

function onResult(msg) {
  if (!state.cameraOn) return;  // a late answer to a frame sent before the camera went off
  const cur = msg.current;
  const now = Date.now() / 1000;
  if (cur && cur.face && cur.probs) {
    $("current-label").textContent = cur.label;
    $("current-label").style.color = COLORS[cur.label];
    $("current-note").textContent = `(${Math.round((cur.confidence || 0) * 100)}% sure)`;
    $("current-bars").innerHTML = probBarsHTML(cur.probs);
    state.timeline.push({t: now, probs: cur.probs});
    if (state.cameraOn) status(`camera on · ${msg.ms} ms`);
  } else {
    $("current-label").textContent = "no face";
    $("current-label").style.color = "";
    $("current-note").textContent = "(nobody in view: nothing is estimated)";
    $("current-bars").innerHTML = probBarsHTML(null);
    state.timeline.push({t: now, probs: null});
  }
  state.timeline = state.timeline.filter(p => p.t >= now - 120);
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
      <button class="thumb-up secondary" title="This helped">&#9650; Helped</button>
      <button class="thumb-down secondary" title="This did not help">&#9660; Did not help</button>
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
    el.querySelector(".rec-status").textContent = "Thanks — this tunes future suggestions.";
  } catch (e) {
    el.querySelector(".rec-status").textContent = e.message;
  }
}

$("export").addEventListener("click", async () => {
  const data = await api("/api/me/export");
  const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)],
                                           {type: "application/json"}));
  const a = Object.assign(document.createElement("a"),
                          {href: url, download: "multinet-emotion-my-data.json"});
  a.click();
  URL.revokeObjectURL(url);
  $("data-status").textContent = "Downloaded.";
});

$("delete").addEventListener("click", async () => {
  if (!confirm("Delete everything stored about you? This cannot be undone.")) return;
  state.closing = true;
  cameraOff();
  if (state.ws) state.ws.close();
  const r = await api("/api/me", {method: "DELETE"});
  localStorage.removeItem(KEY);
  state.me = null;
  $("data-status").textContent = `Deleted: ${r.deleted.samples} emotion samples, ` +
    `${r.deleted.sessions} sessions, ${r.deleted.recommendations} suggestions.`;
});

$("end").addEventListener("click", endSession);
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
