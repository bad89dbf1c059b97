/* The instructor dashboard: live class view, polled from the API. */
"use strict";
const $ = id => document.getElementById(id);
const TOKEN_KEY = "multinet.instructor";
const OUTCOME_SERIES = [
  {name: "offered", color: "#a3abb5"}, {name: "accepted", color: "#2f6fdb"},
  {name: "helped", color: "#2f855a"}, {name: "dismissed", color: "#c05621"},
  {name: "thumbs_down", color: "#c53030"}];
const board = {token: null, classId: null, timers: []};

async function api(path, opts = {}) {
  const r = await fetch(path, Object.assign({}, opts, {headers: {
    Authorization: "Bearer " + board.token, "Content-Type": "application/json"}}));
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const err = new Error((body && body.detail) || r.statusText);
    err.status = r.status;
    throw err;
  }
  return body;
}

function tokenFromHash() {
  const m = location.hash.match(/token=([^&]+)/);
  if (!m) return null;
  history.replaceState(null, "", location.pathname + location.search);  // out of the URL bar
  return decodeURIComponent(m[1]);
}

async function start(token) {
  board.token = token || tokenFromHash() || pageSession.getItem(TOKEN_KEY);
  if (!board.token) return showLogin();
  board.course = courseToken(board.token);
  document.body.classList.toggle("course-view", board.course);
  try {
    await loadClasses();
  } catch (e) {
    if (e.status === 401) return showLogin("That token was not accepted.");
    throw e;
  }
  pageSession.setItem(TOKEN_KEY, board.token);
  $("login").classList.add("hidden");
  $("board").classList.remove("hidden");
  $("timeline-legend").innerHTML = legendHTML(EMOTIONS.map(e => [e, COLORS[e]])
    .concat([["learners with a face in view (dashed)", "#17324d", {dashed: true}]]));
  $("outcome-legend").innerHTML = legendHTML(OUTCOME_SERIES.map(s =>
    [s.name.replace("_", " "), s.color]));
  refresh();
  board.timers.forEach(clearInterval);  // signed in again: one set of timers
  board.timers = [setInterval(refresh, 2000)];
  board.timers.push(setInterval(loadClasses, 15000));
  if (board.course) return;  // a course's view: no class management, no record store panel
  const outbox = () => loadOutbox().catch(() => {});  // the xAPI panel (dashboard-xapi.js)
  outbox();
  board.timers.push(setInterval(outbox, 5000));
}

/* Whether the token is a course's dashboard token from an LTI launch (a signed token for
   the tool's instructor audience), which reads that course's class only: the page then
   leaves out what it may not use. The server decides what the token may do either way. */
function courseToken(token) {
  const parts = token.split(".");
  if (parts.length !== 3) return false;
  try {
    const claims = JSON.parse(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/")));
    return String(claims.aud || "").endsWith("/lti-instructor");
  } catch (e) {
    return false;
  }
}

function showLogin(message) {
  $("login").classList.remove("hidden");
  $("class-picker").classList.add("hidden");
  $("board").classList.add("hidden");
  const err = $("login-error");
  err.textContent = message || "";
  err.classList.toggle("hidden", !message);
}

$("login-form").addEventListener("submit", ev => {
  ev.preventDefault();
  start($("token").value.trim()).catch(e => showLogin(e.message));
});

async function loadClasses() {
  const classes = await api("/api/classes");
  const wanted = new URLSearchParams(location.search).get("class");
  const select = $("class-select");
  const current = board.classId || wanted;
  renderClassPanel(classes);  // the classes, their codes and expiry (dashboard-classes.js)
  select.innerHTML = classes.map(c =>
    `<option value="${escapeHTML(c.class_id)}">${escapeHTML(c.name)} (${c.live} live)</option>`).join("");
  if (!classes.length) select.innerHTML = '<option value="">no class yet</option>';
  $("class-picker").classList.remove("hidden");  // hidden on the login screen
  const ids = classes.map(c => c.class_id);
  board.classId = ids.includes(current) ? current
    : (classes.slice().sort((a, b) => b.live - a.live ||
       (b.last_started || 0) - (a.last_started || 0))[0] || {class_id: null}).class_id;
  select.value = board.classId || "";
}

$("class-select").addEventListener("change", ev => {
  board.classId = ev.target.value;
  refresh();
});

let refreshing = false;
async function refresh() {
  if (refreshing || !board.classId) return;
  refreshing = true;
  try {
    const id = encodeURIComponent(board.classId);
    const [ov, tl] = await Promise.all([api(`/api/classes/${id}/overview`),
      api(`/api/classes/${id}/timeline?minutes=10&bucket=10`)]);
    renderOverview(ov);
    const points = tl.points.map(p => ({t: p.t, face_share: p.face_share, learners: p.learners,
                                        probs: p.shares}));  // the labels shown
    drawStacked($("class-timeline"), points, {since: tl.since, until: tl.until,
                faceShare: true, maxGap: 25, empty: "no emotions in the last 10 minutes"});
    $("updated").textContent = "updated " + clockLabel(ov.now);
  } catch (e) {
    if (e.status === 401) { pageSession.removeItem(TOKEN_KEY); location.reload(); }
    $("updated").textContent = "update failed: " + e.message;
  } finally {
    refreshing = false;
  }
}

function renderOverview(ov) {
  const live = ov.learners.filter(l => l.live).length;
  $("learner-count").textContent = `(${live} live of ${ov.learners.length})`;
  $("attention").innerHTML = ov.attention.length ? ov.attention.map(a =>
    `<div class="attention-item" data-learner-id="${escapeHTML(a.learner_id)}"><b>${nameHTML(a.name || a.learner_id)}</b>: ${escapeHTML(a.reason)}</div>`).join("")
    : '<p class="muted">Nobody right now.</p>';
  $("learners").innerHTML = ov.learners.length ? ov.learners.map(learnerCard).join("")
    : '<p class="muted">No learner in this class yet.</p>';
  const rows = Object.entries(ov.outcomes).map(([kind, v]) =>
    ({label: kind.replace(/_/g, " "), values: v}));
  drawBars($("outcomes"), rows, OUTCOME_SERIES, {empty: "no suggestions yet"});
}

/* The top emotions of a mix ("neutral 62%, happy 30%"), or a dash without labelled time. */
function mixText(mix) {
  const top = EMOTIONS.map(e => [e, mix.shares[e]]).filter(([, v]) => v > 0)
    .sort((a, b) => b[1] - a[1]).slice(0, 3);
  return top.length ? top.map(([e, v]) => `${e} ${Math.round(v * 100)}%`).join(", ") : "—";
}

/* One learner: the label shown now (only while their session runs), and the mix of labels
   they were shown over the session and over the last few minutes. */
function learnerCard(l) {
  const cur = l.current;
  const reading = cur && cur.face && !cur.label;
  const label = cur && cur.face ? (reading ? "reading…" : cur.label) : (cur ? "no face" : "—");
  const color = cur && cur.face && !reading ? COLORS[cur.label] : "#ccc";
  const share = cur && cur.face && !reading ?
    ` <span class="muted">${((cur.share || 0) * 100).toFixed(0)}%</span>` : "";
  const classes = ["learner", l.attention ? "attention" : "", l.live ? "" : "offline"].join(" ");
  const neg = l.negative_share == null ? "" :
    `<div class="muted">negative ${Math.round(l.negative_share * 100)}% of the last ${l.mix.recent_minutes} min</div>`;
  const rec = l.recommendation ? `<div class="muted">suggested: ${escapeHTML(l.recommendation.title)}</div>` : "";
  const mix = (m, what) => m.samples ? `<div class="mix" data-mix="${what}">
      <div class="muted">${what === "session" ? (l.ended_at ? "session (ended)" : "this session")
        : `last ${l.mix.recent_minutes} min`}: ${escapeHTML(mixText(m))}</div>${stackHTML(m.shares)}</div>` : "";
  return `<div class="${classes}" data-learner-id="${escapeHTML(l.learner_id)}" style="border-top-color:${color}">
    <div class="name"><span class="dot ${l.live ? "live" : ""}"></span>${nameHTML(l.name || l.learner_id)}</div>
    <div class="state" style="color:${color}">${escapeHTML(label)}${share}</div>
    ${mix(l.mix.recent, "recent")}${mix(l.mix.session, "session")}${neg}${rec}
    ${l.attention ? `<div style="color:var(--danger)">${escapeHTML(l.attention.reason)}</div>` : ""}
  </div>`;
}

start().catch(e => showLogin(e.message));
