/* The dashboard's Classes panel: create a class, see its join code and expiry, give it a new
   code, end it. Loaded before dashboard.js, whose globals (api, board, loadClasses,
   refresh) these functions use when called. */
"use strict";

function expiryText(c) {
  if (c.ended_at) return "class ended " + dateLabel(c.ended_at);
  if (!c.code_expires_at) return "never";
  return (c.code_expired ? "expired " : "") + dateLabel(c.code_expires_at);
}

function dateLabel(t) {
  return new Date(t * 1000).toLocaleString([], {dateStyle: "medium", timeStyle: "short"});
}

/* The code as learners read it from a board: two groups of four. */
function codeLabel(code) {
  return code.length === 8 ? code.slice(0, 4) + "-" + code.slice(4) : code;
}

function renderClassPanel(classes) {
  const rows = document.getElementById("class-rows");
  rows.innerHTML = classes.length ? classes.map(c => `
    <tr data-class-id="${escapeHTML(c.class_id)}" class="${c.ended_at ? "offline" : ""}">
      <td>${nameHTML(c.name)} <span class="muted">${escapeHTML(c.class_id)}</span></td>
      <td><code class="join-code">${c.ended_at ? "—" : escapeHTML(codeLabel(c.join_code))}</code></td>
      <td class="code-expiry">${escapeHTML(expiryText(c))}</td>
      <td>${c.learners} (${c.live} live)</td>
      <td>${c.ended_at || board.course ? "" : `<button class="secondary rotate" type="button">New code</button>
        <button class="secondary end-class" type="button">End</button>`}</td>
    </tr>`).join("")
    : '<tr><td colspan="5" class="muted">No class yet: create one.</td></tr>';
  for (const tr of rows.querySelectorAll("tr[data-class-id]")) {
    const id = tr.dataset.classId;
    const rotate = tr.querySelector(".rotate");
    if (rotate) rotate.onclick = () => classAction(id, "code",
      "Give this class a new code? The current code stops working at once.");
    const end = tr.querySelector(".end-class");
    if (end) end.onclick = () => classAction(id, "end",
      "End this class? Its code stops working; its data stays.");
  }
}

function classError(message) {
  const el = document.getElementById("class-error");
  el.textContent = message || "";
  el.classList.toggle("hidden", !message);
}

async function classAction(id, action, question) {
  if (!confirm(question)) return;
  try {
    const days = parseFloat(document.getElementById("class-days").value);
    await api(`/api/classes/${encodeURIComponent(id)}/${action}`, {method: "POST",
      body: action === "code" && days > 0 ? JSON.stringify({expires_in_days: days}) : undefined});
    classError("");
    await loadClasses();
  } catch (e) {
    classError(e.message);
  }
}

document.getElementById("class-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  const name = document.getElementById("class-name").value.trim();
  const days = parseFloat(document.getElementById("class-days").value);
  try {
    const c = await api("/api/classes", {method: "POST", body: JSON.stringify(
      days > 0 ? {name, expires_in_days: days} : {name})});
    document.getElementById("class-name").value = "";
    classError("");
    board.classId = c.class_id;  // show the new class
    await loadClasses();
    refresh();
  } catch (e) {
    classError("Could not create the class: " + e.message);
  }
});
