// Tag autocomplete for every tag field of the pages: an input with data-autocomplete="tag" (the
// whole field is one tag name) or "query" (the search language: the term at the caret is
// completed, quoted when it has spaces). Suggestions come from GET /api/tags/?prefix=...
// (tags most used first, with their asset counts kept by the catalog), as the user types.
// Arrow keys move in the list, Enter or a click picks, Escape closes; with
// data-autocomplete-submit the field's form is sent once a suggestion is picked.
"use strict";

(() => {
  const api = document.querySelector('meta[name="tags-api"]');
  if (!api) return;
  const LIMIT = 8;
  const KEYWORDS = new Set(["and", "or", "not"]);
  let counter = 0;

  // The fragment being typed in a query at `caret`: [start, end, text, quoted].
  function queryFragment(value, caret) {
    let quoteOpen = -1;
    for (let i = 0; i < caret; i++) if (value[i] === '"') quoteOpen = quoteOpen < 0 ? i : -1;
    if (quoteOpen >= 0) {
      return [quoteOpen, caret, value.slice(quoteOpen + 1, caret), true];
    }
    let start = caret;
    while (start > 0 && !/[\s()"]/.test(value[start - 1])) start--;
    while (value[start] === "-" && start < caret) start++; // -tag: NOT tag
    const text = value.slice(start, caret);
    return [start, caret, text, false];
  }

  function quote(name) {
    return /[\s()"]/.test(name) || KEYWORDS.has(name) || name.startsWith("-") ? `"${name}"` : name;
  }

  function attach(input) {
    const mode = input.dataset.autocomplete;
    const list = document.createElement("ul");
    list.id = `autocomplete-${++counter}`;
    list.className = "autocomplete";
    list.setAttribute("role", "listbox");
    list.dataset.testid = "autocomplete";
    list.hidden = true;
    document.body.append(list);
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-controls", list.id);
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("autocomplete", "off");
    let timer = null;
    let inflight = null;
    let active = -1;
    let fragment = null;

    const options = () => [...list.querySelectorAll('[role="option"]')];

    function close() {
      list.hidden = true;
      list.replaceChildren();
      active = -1;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
    }

    function highlight(index) {
      const all = options();
      active = all.length ? (index + all.length) % all.length : -1;
      all.forEach((option, i) => option.setAttribute("aria-selected", String(i === active)));
      if (active >= 0) {
        input.setAttribute("aria-activedescendant", all[active].id);
        all[active].scrollIntoView({ block: "nearest" });
      }
    }

    function place() {
      const box = input.getBoundingClientRect();
      list.style.left = `${box.left + window.scrollX}px`;
      list.style.top = `${box.bottom + window.scrollY + 2}px`;
      list.style.minWidth = `${box.width}px`;
    }

    function show(tags) {
      list.replaceChildren();
      active = -1;
      tags.forEach((tag, i) => {
        const option = document.createElement("li");
        option.id = `${list.id}-${i}`;
        option.setAttribute("role", "option");
        option.setAttribute("aria-selected", "false");
        option.dataset.testid = "autocomplete-option";
        option.dataset.value = tag.name;
        const name = document.createElement("span");
        name.className = "name";
        name.textContent = tag.name;
        const count = document.createElement("span");
        count.className = "count";
        count.textContent = tag.asset_count.toLocaleString("en");
        option.append(name, count);
        option.addEventListener("mousedown", (event) => {
          event.preventDefault(); // keep the focus in the input
          pick(tag.name);
        });
        list.append(option);
      });
      if (!tags.length) {
        close();
        return;
      }
      place();
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
    }

    function pick(name) {
      if (mode === "query" && fragment) {
        const [start, end] = fragment;
        const before = input.value.slice(0, start);
        let after = input.value.slice(end);
        if (fragment[3] && after.startsWith('"')) after = after.slice(1); // the quote already closed
        const inserted = quote(name);
        input.value = `${before}${inserted}${after.startsWith(" ") ? "" : " "}${after}`;
        const caret = before.length + inserted.length + 1;
        input.setSelectionRange(caret, caret);
      } else {
        input.value = name;
      }
      close();
      input.focus();
      input.dispatchEvent(new CustomEvent("autocomplete:pick", { detail: { name }, bubbles: true }));
      if ("autocompleteSubmit" in input.dataset && input.form) input.form.requestSubmit();
    }

    async function suggest() {
      let text;
      if (mode === "query") {
        fragment = queryFragment(input.value, input.selectionStart ?? input.value.length);
        text = fragment[2];
        if (!fragment[3] && KEYWORDS.has(text.toLowerCase())) text = "";
      } else {
        fragment = null;
        text = input.value;
      }
      text = text.replace(/\s+/g, " ").replace(/^ /, "").toLowerCase();
      if (!text) {
        close();
        return;
      }
      if (inflight) inflight.abort();
      inflight = new AbortController();
      const params = new URLSearchParams({ prefix: text, page_size: String(LIMIT) });
      try {
        const response = await fetch(`${api.content}?${params}`, {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
          signal: inflight.signal,
        });
        if (!response.ok) throw new Error(`the server answered ${response.status}`);
        const body = await response.json();
        if (document.activeElement === input) show(body.results);
      } catch (err) {
        if (err.name !== "AbortError") close(); // no suggestions: the field still works
      }
    }

    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(suggest, 120);
    });
    input.addEventListener("keydown", (event) => {
      if (list.hidden) {
        if (event.key === "ArrowDown" && input.value.trim()) suggest();
        return;
      }
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        const up = event.key === "ArrowUp";
        highlight(active < 0 && up ? -1 : active + (up ? -1 : 1)); // up from none: the last one
      } else if (event.key === "Enter" && active >= 0) {
        event.preventDefault(); // picks the suggestion; the next Enter sends the form
        event.stopPropagation();
        pick(options()[active].dataset.value);
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation(); // Escape closes the list, not the page's dialogs
        close();
      }
    });
    input.addEventListener("blur", () => setTimeout(close, 100));
    window.addEventListener("resize", () => list.hidden || place());
  }

  for (const input of document.querySelectorAll("input[data-autocomplete]")) attach(input);
})();
