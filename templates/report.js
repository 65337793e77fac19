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

  var SVG = "http://www.w3.org/2000/svg";
  var KINDS = { CHAIN: "chain", RETRIEVER: "retriever", PROMPT: "prompt", LLM: "llm", EMBEDDING: "embedding", EVALUATOR: "evaluator" };

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  // The run's spans as a waterfall: nested by depth, coloured by kind, a time axis below;
  // the same drawing as diff.html's, built with DOM calls (no markup parsed).
  function timeline(spans) {
    var W = 640, LABEL = 200, PLOT = 410, ROW = 16, TOP = 6, AXIS = 22;
    var end = 1;
    spans.forEach(function (s) { end = Math.max(end, s[2] + s[3]); });
    var h = TOP + spans.length * ROW + AXIS;
    var root = svg("svg", { "class": "chart waterfall", viewBox: "0 0 " + W + " " + h, width: W, height: h, role: "img", "aria-label": "Spans of the run on a time axis" });
    var x = function (us) { return LABEL + Math.min(1, Math.max(0, us / end)) * PLOT; };
    for (var i = 0; i <= 4; i++) {
      var t = end * i / 4, gx = x(t);
      root.appendChild(svg("line", { "class": "grid", x1: gx, x2: gx, y1: TOP, y2: TOP + spans.length * ROW }));
      root.appendChild(svg("text", { "class": "tick", x: gx, y: TOP + spans.length * ROW + 14, "text-anchor": "middle" }, (t / 1000).toFixed(t < 10000 ? 2 : 0) + " ms"));
    }
    spans.forEach(function (s, row) {
      var y = TOP + row * ROW + ROW / 2;
      var kind = KINDS[s[0]] || "chain";
      var g = svg("g", { "class": "mark span " + kind + (s[4] ? "" : " failed") });
      g.appendChild(svg("title", {}, kind + " " + s[1] + ": starts at " + (s[2] / 1000).toFixed(3) + " ms, takes " + (s[3] / 1000).toFixed(3) + " ms"));
      g.appendChild(svg("rect", { "class": "hit", x: 0, y: y - ROW / 2, width: W, height: ROW }));
      g.appendChild(svg("rect", { "class": "bar", x: x(s[2]), y: y - 5, width: Math.max(1.5, x(s[2] + s[3]) - x(s[2])), height: 10 }));
      root.appendChild(g);
      var label = new Array((s[5] || 0) + 1).join("  ") + kind + " " + s[1];
      root.appendChild(svg("text", { "class": "label", x: 6, y: y + 4, "xml:space": "preserve" }, label.length > 32 ? label.slice(0, 31) + "…" : label));
    });
    return root;
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
