// Renders runs on demand from the embedded JSON, 50 at a time, with textContent only: no
// text from documents, answers or configs is ever parsed as HTML.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("ragprobe-data").textContent);
  var PAGE = 50;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function timeline(spans) {
    var box = el("div");
    var end = 1;
    spans.forEach(function (s) { end = Math.max(end, s[2] + s[3]); });
    spans.forEach(function (s) {
      var row = el("div", "bar-row");
      row.appendChild(el("span", "bar-label", s[0] + " " + s[1] + " · " + (s[3] / 1000).toFixed(3) + " ms"));
      var track = el("div", "bar-track");
      var bar = el("div", s[4] ? "bar" : "bar err");
      bar.style.left = (100 * s[2] / end) + "%";
      bar.style.width = (100 * s[3] / end) + "%";
      track.appendChild(bar);
      row.appendChild(track);
      box.appendChild(row);
    });
    return box;
  }

  function renderRun(run) {
    var box = el("details", "run");
    var status = run.s === "p" ? "pass" : run.s === "f" ? "fail" : "error";
    var summary = el("summary");
    summary.appendChild(el("span", "badge " + status, status));
    summary.appendChild(document.createTextNode(" run " + run.r + " · " + run.d + " ms · seed " + run.sd +
      (run.br.length ? " · broke " + run.br.join(", ") : "")));
    box.appendChild(summary);
    box.addEventListener("toggle", function once() {
      if (!box.open || box.dataset.filled) return;
      box.dataset.filled = "1";
      if (run.e !== undefined) box.appendChild(el("pre", null, "error: " + data.strings[run.e]));
      (run.ex || []).forEach(function (x) { box.appendChild(el("div", "reason", "✗ " + x)); });
      box.appendChild(el("div", null, "answer"));
      box.appendChild(el("pre", "answer", run.a === undefined ? "" : data.strings[run.a]));
      box.appendChild(el("div", null, "retrieved documents"));
      run.docs.forEach(function (d) {
        var doc = data.documents[d[0]] || { text: "", metadata: {} };
        var rules = run.off[d[0]] || [];
        var row = el("div", rules.length ? "doc violating" : "doc");
        row.appendChild(el("code", null, d[0] + " · score " + (d[1] === null ? "—" : d[1]) + " · " + JSON.stringify(doc.metadata) +
          (rules.length ? " · ✗ " + rules.join(", ") : "")));
        row.appendChild(el("div", "doc-text", doc.text));
        box.appendChild(row);
      });
      if (run.p !== undefined) {
        var prompt = el("details");
        prompt.appendChild(el("summary", null, "rendered prompt"));
        prompt.appendChild(el("pre", "prompt", data.prompts[run.p].map(function (part) {
          return typeof part === "number" ? data.strings[part] : (data.documents[part.d] || {}).text || "";
        }).join("")));
        box.appendChild(prompt);
      }
      if (run.sp && run.sp.length) {
        box.appendChild(el("div", null, "trace"));
        box.appendChild(timeline(run.sp));
      }
    });
    return box;
  }

  function renderPage(body, runs, page) {
    body.textContent = "";
    var pages = Math.max(1, Math.ceil(runs.length / PAGE));
    var pager = el("div", "pager");
    var prev = el("button", null, "‹ previous");
    var next = el("button", null, "next ›");
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
    prev.addEventListener("click", function () { renderPage(body, runs, page - 1); });
    next.addEventListener("click", function () { renderPage(body, runs, page + 1); });
    pager.appendChild(prev);
    pager.appendChild(el("span", "muted", "page " + (page + 1) + " of " + pages));
    pager.appendChild(next);
    body.appendChild(pager);
    runs.slice(page * PAGE, (page + 1) * PAGE).forEach(function (run) { body.appendChild(renderRun(run)); });
  }

  document.querySelectorAll("details.runs").forEach(function (details) {
    details.addEventListener("toggle", function () {
      if (!details.open || details.dataset.filled) return;
      details.dataset.filled = "1";
      renderPage(details.querySelector(".runs-body"), data.runs[details.dataset.case] || [], 0);
    });
  });

  // Sorting and filtering of the case table.
  var table = document.getElementById("cases");
  var tbody = table.tBodies[0];
  table.querySelectorAll("th[data-sort]").forEach(function (th, index) {
    var ascending = true;
    th.addEventListener("click", function () {
      var column = Array.prototype.indexOf.call(th.parentNode.children, th);
      var numeric = th.dataset.sort === "num";
      var rows = Array.prototype.slice.call(tbody.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.value || a.cells[column].textContent;
        var y = b.cells[column].dataset.value || b.cells[column].textContent;
        var order = numeric ? parseFloat(x) - parseFloat(y) : String(x).localeCompare(String(y));
        return ascending ? order : -order;
      });
      ascending = !ascending;
      rows.forEach(function (row) { tbody.appendChild(row); });
    });
  });
  var statusFilter = document.getElementById("status-filter");
  var tagFilter = document.getElementById("tag-filter");
  function applyFilters() {
    var shown = 0;
    Array.prototype.forEach.call(tbody.rows, function (row) {
      var ok = (!statusFilter.value || row.dataset.status === statusFilter.value) &&
        (!tagFilter.value || (" " + row.dataset.tags + " ").indexOf(" " + tagFilter.value + " ") >= 0);
      row.hidden = !ok;
      if (ok) shown += 1;
    });
    document.getElementById("shown-count").textContent = shown + " of " + tbody.rows.length + " cases shown";
  }
  statusFilter.addEventListener("change", applyFilters);
  tagFilter.addEventListener("change", applyFilters);
  applyFilters();
})();
