/* The learner's choice to share per-minute emotion summaries with the learning platform's
   record store (xAPI; docs/xapi-profile.md). Shown only when the service sends learning
   records at all; off until the learner turns it on. Loaded after learner.js, whose globals
   (state, api) it uses once the learner is signed in. */
"use strict";

(function () {
  const panel = document.getElementById("sharing");
  const box = document.getElementById("share-emotions");
  const main = document.getElementById("main");

  async function load() {
    if (!state.me) return;
    const s = await api("/api/me/sharing");
    panel.classList.toggle("hidden", !s.lrs);
    box.checked = s.emotions;
  }

  const shown = () => {
    if (!main.classList.contains("hidden")) load().catch(() => panel.classList.add("hidden"));
  };
  new MutationObserver(shown).observe(main, {attributes: true, attributeFilter: ["class"]});
  shown();  // already signed in (a page restored from storage)

  box.addEventListener("change", async () => {
    box.disabled = true;
    try {
      const s = await api("/api/me/sharing", {method: "PUT",
                                              body: JSON.stringify({emotions: box.checked})});
      box.checked = s.emotions;
    } catch (e) {
      box.checked = !box.checked;  // not changed
    } finally {
      box.disabled = false;
    }
  });
})();
