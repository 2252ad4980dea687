// Bulk upload: each file goes in its own request to POST /api/assets/ (XMLHttpRequest, for a
// progress bar per file); then GET /api/assets/<id>/ every second until the tagger is done.
// A row's status text is one of: uploading, pending, tagged, failed: <error>,
// duplicate of #<id>, rejected: <reason> — <message>.
"use strict";

(() => {
  const zone = document.getElementById("drop-zone");
  const input = document.getElementById("file-input");
  const table = document.getElementById("uploads");
  const tbody = document.getElementById("upload-rows");
  const summary = document.getElementById("upload-summary");
  const api = zone.dataset.uploadApi;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const PARALLEL = 3;
  const POLL_MS = 1000;

  const queue = [];
  const rows = [];
  const waiting = new Map(); // asset id -> rows waiting for the tagger
  let running = 0;
  let pollTimer = null;

  function assetUrl(id) {
    return `/assets/${id}/`;
  }

  function addRow(file) {
    const tr = document.createElement("tr");
    tr.setAttribute("data-testid", "upload-row");
    tr.dataset.filename = file.name;
    const name = document.createElement("td");
    name.className = "name";
    name.textContent = file.name;
    const bar = document.createElement("td");
    const progress = document.createElement("progress");
    progress.max = 100;
    progress.value = 0;
    bar.append(progress);
    const status = document.createElement("td");
    status.setAttribute("data-testid", "upload-status");
    const linkCell = document.createElement("td");
    tr.append(name, bar, status, linkCell);
    tbody.append(tr);
    table.hidden = false;
    const row = { file, tr, progress, status, linkCell, state: "uploading" };
    setStatus(row, "uploading", "uploading");
    rows.push(row);
    return row;
  }

  function setStatus(row, text, state) {
    row.status.textContent = text;
    row.state = state;
    row.tr.dataset.state = state;
    updateSummary();
  }

  function setLink(row, id) {
    if (row.linkCell.querySelector("a")) return;
    const a = document.createElement("a");
    a.href = assetUrl(id);
    a.setAttribute("data-testid", "asset-link");
    a.textContent = `#${id}`;
    row.linkCell.append(a);
  }

  function updateSummary() {
    const counts = {};
    for (const row of rows) counts[row.state] = (counts[row.state] || 0) + 1;
    summary.textContent = Object.entries(counts)
      .map(([state, n]) => `${n} ${state}`)
      .join(", ");
  }

  function enqueue(files) {
    for (const file of files) queue.push(addRow(file));
    pump();
  }

  function pump() {
    while (running < PARALLEL && queue.length) {
      const row = queue.shift();
      running += 1;
      send(row).finally(() => {
        running -= 1;
        pump();
      });
    }
  }

  function send(row) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", api);
      xhr.setRequestHeader("X-CSRFToken", csrf);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) row.progress.value = (100 * event.loaded) / event.total;
      });
      xhr.addEventListener("load", () => {
        row.progress.value = 100;
        answered(row, xhr.status, xhr.response);
        resolve();
      });
      xhr.addEventListener("error", () => {
        setStatus(row, "failed: the upload did not reach the server (network error)", "failed");
        resolve();
      });
      const form = new FormData();
      form.append("files", row.file, row.file.name);
      xhr.send(form);
    });
  }

  function answered(row, status, body) {
    if (status === 201 && body && body.assets && body.assets.length) {
      const asset = body.assets[0];
      setLink(row, asset.id);
      if (asset.duplicate) {
        setStatus(row, `duplicate of #${asset.id}`, "duplicate");
      } else {
        showAsset(row, asset);
      }
      return;
    }
    const error = body && body.errors && body.errors[0];
    if (error) {
      setStatus(row, `rejected: ${error.reason} — ${error.error}`, "rejected");
    } else if (body && body.detail) {
      const reason = body.reason || (status === 401 ? "not_signed_in" : status === 403 ? "forbidden" : `http_${status}`);
      setStatus(row, `rejected: ${reason} — ${body.detail}`, "rejected");
    } else {
      setStatus(row, `rejected: http_${status} — the server answered ${status}`, "rejected");
    }
  }

  function showAsset(row, asset) {
    if (asset.status === "tagged") {
      setStatus(row, "tagged", "tagged");
      row.tr.title = asset.tags.map((t) => t.name).join(", ");
    } else if (asset.status === "failed") {
      setStatus(row, `failed: ${asset.error}`, "failed");
    } else {
      setStatus(row, "pending", "pending");
      const list = waiting.get(asset.id) || [];
      list.push(row);
      waiting.set(asset.id, list);
      if (!pollTimer) pollTimer = setInterval(poll, POLL_MS);
    }
  }

  async function poll() {
    for (const [id, list] of [...waiting]) {
      let asset;
      try {
        const response = await fetch(`${api}${id}/`, {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
        });
        if (!response.ok) continue; // try again next second
        asset = await response.json();
      } catch (err) {
        continue;
      }
      if (asset.status !== "pending") {
        waiting.delete(id);
        for (const row of list) showAsset(row, asset);
      }
    }
    if (!waiting.size) {
      clearInterval(pollTimer);
      pollTimer = null;
    }
  }

  input.addEventListener("change", () => {
    enqueue([...input.files]);
    input.value = "";
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer && event.dataTransfer.files.length) enqueue([...event.dataTransfer.files]);
  });
  // a file dropped beside the zone must not replace the page
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => {
      if (!zone.contains(event.target)) event.preventDefault();
    });
  }
})();
