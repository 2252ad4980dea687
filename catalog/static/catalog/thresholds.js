// The thresholds page: how many assets a threshold would keep, counted live by the server
// (GET /thresholds/count/?tag=...&threshold=...) while the number is typed; that changes nothing.
// Only the Apply button (for users who may set thresholds) posts the form; Enter counts.
"use strict";

(() => {
  const section = document.getElementById("threshold");
  if (!section) return;
  const input = document.getElementById("threshold-input");
  const output = document.getElementById("threshold-kept");
  const form = document.getElementById("threshold-form");
  const apply = document.getElementById("threshold-apply");
  const applyValue = document.getElementById("threshold-apply-value");
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
    if (section.dataset.exact) params.set("exact", "1"); // the page counted exactly: so does the live count
    try {
      const response = await fetch(`${section.dataset.countUrl}?${params}`, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        signal: inflight.signal,
      });
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      const body = await response.json();
      output.textContent = `${body.exact ? "" : "≈ "}${body.kept} assets kept`;
    } catch (err) {
      if (err.name !== "AbortError") output.textContent = `cannot count: ${err.message}`;
    }
  }

  input.addEventListener("input", () => {
    if (applyValue) applyValue.textContent = input.value;
    clearTimeout(timer);
    timer = setTimeout(count, 120);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault(); // Enter counts; applying takes the button
    count();
  });
  form.addEventListener("submit", (event) => {
    if (apply && event.submitter === apply) return; // the form posts: apply the threshold
    event.preventDefault();
    count();
  });
  mark(Number(input.value));
})();
