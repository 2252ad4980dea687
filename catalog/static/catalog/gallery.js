// The gallery: select assets for the bulk "add tag" action (content managers).
"use strict";

(() => {
  const form = document.getElementById("bulk-form");
  if (!form) return;
  const all = document.getElementById("select-all");
  const count = document.getElementById("selected-count");
  const boxes = () => [...document.querySelectorAll('[data-testid="select-asset"]')];

  function refresh() {
    const ticked = boxes().filter((box) => box.checked);
    count.textContent = `${ticked.length} selected`;
    for (const box of boxes()) box.closest('[data-testid="asset-card"]').classList.toggle("selected", box.checked);
    all.checked = ticked.length > 0 && ticked.length === boxes().length;
    all.indeterminate = ticked.length > 0 && ticked.length < boxes().length;
  }

  all.addEventListener("change", () => {
    for (const box of boxes()) box.checked = all.checked;
    refresh();
  });
  document.addEventListener("change", (event) => {
    if (event.target.matches('[data-testid="select-asset"]')) refresh();
  });
  refresh();
})();
