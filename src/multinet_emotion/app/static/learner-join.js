/* The learner page's way in: the class code is checked (nothing stored), the consent is
   read, and only "I agree" signs the learner up. Loaded before learner.js, whose globals
   ($, state, api, show, who) these functions use when called. */
"use strict";
/* The class code was refused (unknown, expired): back to the code, with the reason. */
class Refused extends Error {}
function refused(message) {
  signupMode();
  $("signup-error").textContent = message;
  $("signup-error").classList.remove("hidden");
  show("signup");
}

/* A new learner types a name and a code; a signed-in one only a code. */
function signupMode() {
  const back = Boolean(state.me);
  $("name-field").classList.toggle("hidden", back);
  $("name").required = !back;
  $("returning").classList.toggle("hidden", !back);
  if (back) $("returning").innerHTML = "Welcome back, " + nameHTML(state.me.name) +
    ". Type your class code to start a session.";
  if (back && state.me.join_code && !$("join-code").value) $("join-code").value = state.me.join_code;
}

/* Continue: the class code is checked (nothing is stored), then the consent is shown. */
async function checkCode(ev) {
  ev.preventDefault();
  $("signup-error").classList.add("hidden");
  try {
    const code = $("join-code").value.trim();
    const cls = await api("/api/join/" + encodeURIComponent(code));
    state.joining = {name: $("name").value.trim(), code, cls};
    $("consent-class").innerHTML = "Class: " + nameHTML(cls.name);
    $("consent-error").classList.add("hidden");
    $("signup-message").classList.add("hidden");
    show("consent");
  } catch (e) {
    if (e instanceof SignedOut) return;
    $("signup-error").textContent = "Could not join: " + e.message;
    $("signup-error").classList.remove("hidden");
  }
}

/* "I agree": only now is the learner signed up (with their consent), or a returning
   learner's agreement to the current text recorded, and a session started. */
async function agreeAndStart(source) {
  if (state.lti) return ltiAgreeAndStart(source);  // launched from a learning platform
  const j = state.joining;
  if (!j) throw new Refused("no class code");
  if (!state.me) {
    let r;
    try {
      r = await api("/api/learners", {method: "POST", body: JSON.stringify(
        {name: j.name, consent: true, consent_version: state.consent.version})});
    } catch (e) {
      $("consent-error").textContent = "Could not sign up: " + e.message;
      $("consent-error").classList.remove("hidden");
      throw new Refused(e.message);
    }
    state.me = {token: r.token, learner_id: r.learner_id, name: r.name};
  } else {
    // a returning learner agrees to the text as it is now (it may have changed since they
    // signed up: where pictures are analysed, learning records); the server records it
    try {
      await api("/api/me/consent", {method: "POST", body: JSON.stringify(
        {consent: true, consent_version: state.consent.version})});
    } catch (e) {
      if (e instanceof SignedOut) throw e;
      $("consent-error").textContent = "Could not record your agreement: " + e.message;
      $("consent-error").classList.remove("hidden");
      throw new Refused(e.message);
    }
  }
  Object.assign(state.me, {join_code: j.code, class_name: j.cls.name});
  pageLocal.setItem(KEY, JSON.stringify(state.me));
  who();
  show("main");
  await startSession(source);
}

/* "I do not agree": nothing is sent; the page says that nothing was stored. */
function decline() {
  state.joining = null;
  $("declined-text").textContent = state.me
    ? "You did not agree, so nothing new was stored and no session started. What was stored " +
      "before stays until you delete it (Continue, then Delete all my data)."
    : "You did not agree, so nothing about you was stored: not your name, not your class, " +
      "no reading. You can close this page.";
  if (!state.me) $("name").value = "";
  show("declined");
}
