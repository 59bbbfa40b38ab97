// The console's only script (CSP: script-src 'self'; nothing inline, no eval).
"use strict";

// A box with data-poll="url" replaces itself with a fresh copy every 2 s until the copy
// stops asking to be polled (a finished job).
function poll(box) {
  const url = box.dataset.poll;
  setTimeout(async () => {
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.ok) {
        const holder = document.createElement("div");
        holder.innerHTML = await response.text();
        const fresh = holder.firstElementChild;
        box.replaceWith(fresh);
        if (fresh.dataset.poll) poll(fresh);
        return;
      }
    } catch (err) {
      // The console restarting: keep polling.
    }
    poll(box);
  }, 2000);
}

// A checkbox with data-select-all="name" ticks every checkbox of that name.
function selectAll(box) {
  box.addEventListener("change", () => {
    for (const other of document.querySelectorAll(`input[name="${box.dataset.selectAll}"]`)) {
      other.checked = box.checked;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll]").forEach(poll);
  document.querySelectorAll("[data-select-all]").forEach(selectAll);
});
