/* The learner page opened from a learning platform (LTI 1.3). The launch hands the page a
   ticket in the URL (#lti=...); the consent comes first, and only "I agree" trades the ticket
   for the learner's token (POST /lti/learner), which is when the learner is stored. Also: the
   camera blocked by the platform's iframe (no allow="camera"), said plainly. Loaded before
   learner.js, whose globals ($, state, api, show, who, KEY) these functions use when called. */
"use strict";

/* A launch: take the ticket out of the URL and show the consent. False: no launch. */
function ltiLaunch() {
  const m = location.hash.match(/(?:^#|&)lti=([^&]+)/);
  if (!m) return false;
  history.replaceState(null, "", location.pathname + location.search);  // out of the URL bar
  const ticket = decodeURIComponent(m[1]);
  let claims = {};
  try {  // for display only: the server checks the ticket's signature
    claims = JSON.parse(atob(ticket.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch (e) { /* shown without the course's name */ }
  state.lti = {ticket};
  state.me = null;  // whoever was signed in here before: the launch says who this is
  $("consent-class").innerHTML = "Class: " + nameHTML(claims.course || "your course") +
    (claims.name ? " · " + nameHTML(claims.name) : "");
  $("back").classList.add("hidden");  // the way in is the course, not a class code
  show("consent");
  return true;
}

/* "I agree" after a launch: the learner is stored now, with the consent they gave. */
async function ltiAgreeAndStart(source) {
  let r;
  try {
    r = await api("/lti/learner", {method: "POST", body: JSON.stringify(
      {ticket: state.lti.ticket, consent: true, consent_version: state.consent.version})});
  } catch (e) {
    $("consent-error").textContent = "Could not sign in: " + e.message;
    $("consent-error").classList.remove("hidden");
    throw new Refused(e.message);
  }
  state.lti = null;
  state.me = {token: r.token, learner_id: r.learner_id, name: r.name, join_code: r.join_code,
              class_name: r.class_name};
  pageLocal.setItem(KEY, JSON.stringify(state.me));
  who();
  show("main");
  await startSession(source);
}

/* In a frame whose page did not allow the camera (the iframe lacks allow="camera"), the
   browser refuses it whatever the learner chooses: say so, and what can be done. */
function cameraBlockedByFrame() {
  if (window.top === window) return false;
  const policy = document.permissionsPolicy || document.featurePolicy;
  return Boolean(policy && policy.allowsFeature && !policy.allowsFeature("camera"));
}

const FRAME_BLOCKS_CAMERA = "The learning platform's page does not let this tool use your " +
  "camera (its frame does not allow it), so the camera stays off. You can keep learning " +
  "without it. To use the camera, ask the platform's administrator to allow the camera for " +
  "this tool (allow=\"camera\"), or to open the tool in a new window.";
