// The thresholds page: how many assets a threshold would keep, counted live by the server
// (GET /thresholds/count/?tag=...&threshold=...) while the number is typed; nothing changes.
"use strict";

(() => {
  const section = document.getElementById("threshold");
  if (!section) return;
  const input = document.getElementById("threshold-input");
  const output = document.getElementById("threshold-kept");
  const form = document.getElementById("threshold-form");
  const rows = [...section.querySelectorAll('[data-testid="threshold-row"]')];
  let timer = null;
  let inflight = null;

  function mark(value) {
    let best = null;
    for (const row of rows) if (Number(row.dataset.threshold) <= value + 1e-9) best = row;
    for (const row of rows) row.classList.toggle("tried", row === best);
  }

  async function count() {
    const value = Number(input.value);
    if (input.value === "" || !(value >= 0 && value <= 1)) {
      output.textContent = "a threshold is between 0 and 1";
      return;
    }
    mark(value);
    if (inflight) inflight.abort();
    inflight = new AbortController();
    const params = new URLSearchParams({ tag: section.dataset.tag, threshold: String(value) });
    try {
      const response = await fetch(`${section.dataset.countUrl}?${params}`, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        signal: inflight.signal,
      });
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      const body = await response.json();
      output.textContent = `${body.kept} assets kept`;
    } catch (err) {
      if (err.name !== "AbortError") output.textContent = `cannot count: ${err.message}`;
    }
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(count, 120);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    count();
  });
  mark(Number(input.value));
})();
