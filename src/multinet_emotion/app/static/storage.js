/* Web storage that may be refused. In a learning platform's iframe, a browser that blocks
   third-party storage throws on any use of localStorage and sessionStorage; the pages then
   keep what they would have stored in memory, for this visit only (an LTI launch hands
   the page what it needs again at the next visit). */
"use strict";
function storageOr(kind) {
  try {
    const s = window[kind];
    s.getItem("multinet.probe");
    return s;
  } catch (e) {
    const kept = new Map();
    return {getItem: k => (kept.has(k) ? kept.get(k) : null),
            setItem: (k, v) => { kept.set(k, String(v)); },
            removeItem: k => { kept.delete(k); }};
  }
}
const pageLocal = storageOr("localStorage");
const pageSession = storageOr("sessionStorage");
