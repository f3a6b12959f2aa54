// Review page: settle a card by one click (its form is posted in the background) or by one
// key on the outlined card. Without this script the same forms work by plain posting.
"use strict";
(function () {
  const queue = document.getElementById("queue");
  if (!queue) return;
  const message = document.getElementById("message");
  const backlog = document.getElementById("backlog");
  const KEYS = { ArrowUp: 0, ArrowRight: 90, ArrowDown: 180, ArrowLeft: 270 };

  function cards() { return Array.from(queue.querySelectorAll("form.card")); }

  function current() {
    const active = document.activeElement;
    const card = active && active.closest ? active.closest("form.card") : null;
    return card || queue.querySelector("form.card.current") || cards()[0] || null;
  }

  function mark(card) {
    cards().forEach((c) => c.classList.toggle("current", c === card));
  }

  async function settle(card, correction) {
    if (card.dataset.busy) return;
    card.dataset.busy = "1";
    const csrf = card.elements.csrf.value;
    try {
      const response = await fetch(card.action, {
        method: "POST",
        body: new URLSearchParams({ correction: String(correction), csrf: csrf }),
        headers: { "Accept": "application/json", "X-CSRF-Token": csrf },
        credentials: "same-origin",
      });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(data.error || response.statusText);
      const next = card.nextElementSibling || card.previousElementSibling;
      card.remove();
      backlog.textContent = String(data.backlog);
      message.textContent = "Saved " + data.output + ".";
      if (next) {
        mark(next);
        next.querySelector("button.turn").focus({ preventScroll: false });
      } else if (data.backlog > 0) {
        window.location.reload();  // the next ones wait beyond this page
      } else {
        message.textContent += " Nothing else waits for review.";
      }
    } catch (error) {
      delete card.dataset.busy;
      message.textContent = "Not saved: " + error.message;
    }
  }

  queue.addEventListener("submit", (event) => {
    event.preventDefault();
    const button = event.submitter;
    if (button && button.value !== "") settle(event.target, Number(button.value));
  });
  queue.addEventListener("focusin", () => mark(current()));
  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    const card = current();
    if (!card) return;
    if (event.key in KEYS) {
      event.preventDefault();
      settle(card, KEYS[event.key]);
    } else if (event.key === "Enter") {
      event.preventDefault();  // Enter means the model's pick, even on a focused button
      if (card.dataset.guess !== "") settle(card, Number(card.dataset.guess));
    }
  });
  mark(current());
})();
