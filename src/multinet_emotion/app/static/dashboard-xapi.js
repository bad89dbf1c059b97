/* The dashboard's Learning records (xAPI) panel: the outbox of statements for the LRS, so
   an operator sees at once when the LRS is down or refuses statements. Loaded before
   dashboard.js, whose globals (api, $) it uses when called. */
"use strict";

function ageLabel(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function renderOutbox(s) {
  const card = document.getElementById("xapi-card");
  card.classList.toggle("hidden", !s.configured);
  if (!s.configured) return;
  const broken = s.failing > 0 || s.failures_in_a_row > 0;
  document.getElementById("xapi-state").textContent = broken
    ? (s.failures_in_a_row > 0 ? "LRS not reachable or failing" : "some statements rejected")
    : "delivering";
  document.getElementById("xapi-state").className = broken ? "error" : "muted";
  document.getElementById("xapi-endpoint").textContent = s.endpoint || "";
  const cells = {"xapi-queued": s.queued, "xapi-sent": s.sent, "xapi-failing": s.failing,
                 "xapi-oldest": ageLabel(s.oldest_queued_age),
                 "xapi-next": s.next_try_in === null ? "—" : ageLabel(s.next_try_in)};
  for (const [id, value] of Object.entries(cells)) document.getElementById(id).textContent = value;
  const err = document.getElementById("xapi-error");
  const text = s.last_error || s.failing_error;
  err.textContent = text ? "Last error: " + text : "";
  err.classList.toggle("hidden", !text);
  document.getElementById("xapi-retry").classList.toggle("hidden", !s.failing);
}

async function loadOutbox() {
  renderOutbox(await api("/api/xapi/outbox"));
}

document.getElementById("xapi-retry").addEventListener("click", async () => {
  await api("/api/xapi/outbox/retry", {method: "POST"});
  await loadOutbox();
});
