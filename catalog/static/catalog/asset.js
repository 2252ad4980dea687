// The asset page: review tags in place through POST /api/assets/<id>/review/ (no reload), and
// keyboard shortcuts: j/k move between tag rows, a accept, r reject, t add a tag, ? help.
"use strict";

(() => {
  const page = document.getElementById("asset");
  const tbody = document.getElementById("tag-rows");
  const help = document.getElementById("shortcut-help");
  const errorBox = document.getElementById("review-error");
  const template = document.getElementById("tag-row-template");
  const addInput = document.querySelector('[data-testid="add-tag-input"]');
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const api = page.dataset.reviewApi;
  let current = null; // the tag row j/k/a/r act on

  const tagRows = () => [...tbody.querySelectorAll('[data-testid="tag-row"]')];
  const rowOf = (name) => tagRows().find((tr) => tr.dataset.tag === name) || null;

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function select(row) {
    if (!row) return;
    if (current) current.classList.remove("current");
    current = row;
    row.classList.add("current");
    row.focus();
  }

  function fill(row, tag) {
    const cell = (id) => row.querySelector(`[data-testid="${id}"]`);
    row.dataset.tag = tag.name;
    row.dataset.state = tag.state;
    row.querySelector(".name").textContent = tag.name;
    cell("tag-score").textContent = Number(tag.score).toFixed(2);
    cell("tag-source").textContent = tag.source;
    cell("tag-model").textContent = tag.model_version
      ? `${tag.model_version.name}:${tag.model_version.version}`
      : "—";
    cell("review-state").textContent = tag.state;
    const hidden = row.querySelector('input[name="tag"]');
    if (hidden) hidden.value = tag.name;
  }

  function update(asset, focusName) {
    for (const tag of asset.tags) {
      let row = rowOf(tag.name);
      if (!row) {
        if (!template) continue;
        row = template.content.firstElementChild.cloneNode(true);
        const empty = tbody.querySelector(".no-tags");
        if (empty) empty.remove();
        tbody.append(row);
      }
      fill(row, tag);
    }
    if (focusName) {
      const row = rowOf(focusName);
      if (row) {
        row.classList.add("changed");
        setTimeout(() => row.classList.remove("changed"), 800);
      }
    }
  }

  async function review(tag, action, row) {
    const buttons = row ? [...row.querySelectorAll("button")] : [];
    buttons.forEach((b) => (b.disabled = true));
    try {
      const response = await fetch(api, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify({ tag, action }),
      });
      let body = null;
      try {
        body = await response.json();
      } catch (err) {
        body = null;
      }
      if (!response.ok) {
        const detail = body && (body.detail || (body.tag && body.tag[0]) || (body.action && body.action[0]));
        showError(`${action} ${tag}: ${detail || `the server answered ${response.status}`}`);
        return false;
      }
      showError("");
      update(body, tag.trim().toLowerCase().replace(/\s+/g, " "));
      return true;
    } catch (err) {
      showError(`${action} ${tag}: the server cannot be reached`);
      return false;
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!form.classList.contains("review-form")) return;
    event.preventDefault();
    const tagField = form.querySelector('[name="tag"]');
    const action = event.submitter && event.submitter.name === "action"
      ? event.submitter.value
      : form.querySelector('[name="action"]').value;
    const tag = tagField.value;
    if (!tag.trim()) return;
    const row = form.closest('[data-testid="tag-row"]');
    const done = await review(tag, action, row);
    if (done && action === "add") tagField.value = "";
    if (row) select(row);
  });

  tbody.addEventListener("focusin", (event) => {
    const row = event.target.closest('[data-testid="tag-row"]');
    if (row && row !== current) {
      if (current) current.classList.remove("current");
      current = row;
      row.classList.add("current");
    }
  });

  function move(step) {
    const all = tagRows();
    if (!all.length) return;
    const at = all.indexOf(current);
    const next = at < 0 ? (step > 0 ? 0 : all.length - 1) : Math.min(all.length - 1, Math.max(0, at + step));
    select(all[next]);
  }

  function act(testid) {
    const row = current || tagRows()[0];
    if (!row) return;
    const button = row.querySelector(`[data-testid="${testid}"]`);
    if (button) {
      select(row);
      button.click();
    }
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const typing = event.target.closest("input, textarea, select, [contenteditable]");
    if (event.key === "Escape") {
      if (!help.hidden) help.hidden = true;
      else if (typing) event.target.blur();
      return;
    }
    if (typing) return;
    switch (event.key) {
      case "j":
        move(1);
        break;
      case "k":
        move(-1);
        break;
      case "a":
        act("accept");
        break;
      case "r":
        act("reject");
        break;
      case "t":
        if (!addInput) return;
        addInput.focus();
        break;
      case "?":
        help.hidden = !help.hidden;
        break;
      default:
        return;
    }
    event.preventDefault();
  });

  help.addEventListener("click", () => (help.hidden = true));
})();
