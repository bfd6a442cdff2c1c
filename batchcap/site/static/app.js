// batchcap report: a virtualized grid over records loaded in chunks (data/cN.js), state in the URL hash.
// Every string from the records (paths, captions, error messages) is shown with textContent or set as a
// property, never parsed as HTML. The page's CSP forbids inline script, so nothing in the data can run.
(function () {
  "use strict";

  var META = self.BATCHCAP_META;
  var MIN_W = 190, CARD_H = 300, GAP = 12;
  var ROW_H = CARD_H + GAP;
  var colW = MIN_W + GAP; // set by columns(): cards stretch to fill the row
  var BUFFER_ROWS = 2;
  var THUMB_NAME = /^[0-9a-f]{8,64}\.webp$/;
  // Row layout written by batchcap/site/build.py.
  var PATH = 0, KIND = 1, TEXT = 2, LATENCY = 3, THUMB = 4, FLAGS = 5, HTTP = 6, ATTEMPTS = 7, COST = 8, TASK = 9,
    HAY = 10;

  var chunks = [];
  var loading = {};
  var allLoaded = null; // Promise once loadAll() started
  var view = null; // null: every record in path order (no search, no filter); else an array of rows
  var state = { q: "", status: "all", sort: "path", task: "all" };
  var grid, countEl, emptyEl, qEl, statusEl, sortEl, taskEl;
  var scheduled = false;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function fmtInt(n) { return Number(n || 0).toLocaleString("en-US"); }

  function fmtBytes(n) {
    var units = ["B", "kB", "MB", "GB", "TB"], i = 0;
    n = Number(n || 0);
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }

  function fmtMoney(usd) {
    if (usd === null || usd === undefined) return "–";
    if (usd >= 0.1 || usd === 0) return "$" + usd.toFixed(2);
    if (usd >= 0.0001) return "$" + usd.toFixed(4);
    return "$" + usd.toPrecision(2);
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined) return "–";
    if (s < 1) return (s * 1000).toFixed(0) + " ms";
    if (s < 120) return s.toFixed(2) + " s";
    if (s < 7200) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  // ---------------------------------------------------------------------------------------------------
  // Data: chunk files are plain scripts that assign to self.BATCHCAP_CHUNKS (fetch() fails on file://).

  function loadChunk(i) {
    if (chunks[i]) return Promise.resolve(chunks[i]);
    if (loading[i]) return loading[i];
    loading[i] = new Promise(function (resolve, reject) {
      var s = document.createElement("script");
      s.src = "data/c" + i + ".js";
      s.async = true;
      s.onload = function () {
        var store = self.BATCHCAP_CHUNKS || {};
        var rows = store["c" + i] || [];
        delete store["c" + i];
        chunks[i] = rows;
        s.remove();
        resolve(rows);
      };
      s.onerror = function () { s.remove(); delete loading[i]; reject(new Error("cannot load data/c" + i + ".js")); };
      document.head.appendChild(s);
    });
    return loading[i];
  }

  function loadAll() {
    if (allLoaded) return allLoaded;
    var next = 0, done = 0, n = META.chunks;
    allLoaded = new Promise(function (resolve) {
      if (!n) { resolve(); return; }
      function pump() {
        if (next >= n) return;
        var i = next++;
        loadChunk(i).catch(function () { chunks[i] = chunks[i] || []; }).then(function () {
          done++;
          countEl.textContent = "loading records… " + Math.round((100 * done) / n) + "%";
          if (done === n) resolve(); else pump();
        });
      }
      for (var k = 0; k < 4; k++) pump();
    });
    return allLoaded;
  }

  // ---------------------------------------------------------------------------------------------------
  // State <-> URL hash, so a view can be shared: #q=cat&status=e:RejectedImage&sort=-latency

  function readHash() {
    var p = new URLSearchParams(location.hash.replace(/^#/, ""));
    state.q = p.get("q") || "";
    state.status = p.get("status") || "all";
    state.sort = p.get("sort") || "path";
    state.task = p.get("task") || "all";
    if (!hasOption(statusEl, state.status)) state.status = "all";
    if (!hasOption(sortEl, state.sort)) state.sort = "path";
    if (!hasOption(taskEl, state.task)) state.task = "all";
    qEl.value = state.q;
    statusEl.value = state.status;
    sortEl.value = state.sort;
    taskEl.value = state.task;
  }

  function writeHash() {
    var p = new URLSearchParams();
    if (state.q) p.set("q", state.q);
    if (state.status !== "all") p.set("status", state.status);
    if (state.sort !== "path") p.set("sort", state.sort);
    if (state.task !== "all") p.set("task", state.task);
    var hash = p.toString();
    var url = location.pathname + location.search + (hash ? "#" + hash : "");
    try { history.replaceState(null, "", url); } catch (e) { location.hash = hash; }
  }

  function hasOption(select, value) {
    for (var i = 0; i < select.options.length; i++) if (select.options[i].value === value) return true;
    return false;
  }

  // ---------------------------------------------------------------------------------------------------
  // Filtering and sorting (over all chunks: they are loaded first, the grid says so meanwhile).

  function isDefault() {
    return !state.q.trim() && state.status === "all" && state.task === "all" && (state.sort === "path" || state.sort === "-path");
  }

  function matcher() {
    var terms = state.q.toLowerCase().split(/\s+/).filter(Boolean);
    var st = state.status, kind = -1, flag = -1, wantOk = st === "ok", wantErr = st === "error";
    if (st.indexOf("e:") === 0) kind = META.kinds.indexOf(st.slice(2));
    if (st.indexOf("f:") === 0) flag = META.flags.indexOf(st.slice(2));
    var task = state.task === "all" ? -1 : (META.tasks || []).indexOf(state.task);
    return function (r) {
      if (task >= 0 && r[TASK] !== task) return false;
      if (wantOk && r[KIND] !== 0) return false;
      if (wantErr && r[KIND] === 0) return false;
      if (kind > 0 && r[KIND] !== kind) return false;
      if (flag >= 0 && r[FLAGS].indexOf(flag) < 0) return false;
      if (!terms.length) return true;
      var hay = r[HAY];
      if (hay === undefined) hay = r[HAY] = (r[PATH] + "\n" + r[TEXT]).toLowerCase();
      for (var i = 0; i < terms.length; i++) if (hay.indexOf(terms[i]) < 0) return false;
      return true;
    };
  }

  function comparator() {
    var key = state.sort.replace(/^-/, ""), sign = state.sort.charAt(0) === "-" ? -1 : 1;
    if (key === "latency" || key === "cost") {
      var col = key === "latency" ? LATENCY : COST;
      return function (a, b) {
        var x = a[col], y = b[col];
        if (x === undefined) x = null;
        if (y === undefined) y = null;
        if (x === null && y === null) return a[PATH] < b[PATH] ? -1 : 1;
        if (x === null) return 1; // no value: last either way
        if (y === null) return -1;
        return x === y ? (a[PATH] < b[PATH] ? -1 : 1) : sign * (x - y);
      };
    }
    if (key === "length") {
      return function (a, b) {
        var x = a[KIND] === 0 ? a[TEXT].length : -1, y = b[KIND] === 0 ? b[TEXT].length : -1;
        return x === y ? (a[PATH] < b[PATH] ? -1 : 1) : sign * (x - y);
      };
    }
    return function (a, b) { return sign * (a[PATH] < b[PATH] ? -1 : a[PATH] > b[PATH] ? 1 : 0); };
  }

  var token = 0;
  var filtering = false; // true while the chunks a search needs are loading: "no match" is not known yet
  function apply() {
    writeHash();
    var mine = ++token;
    if (isDefault()) { filtering = false; view = null; layout(); return; }
    filtering = true;
    view = [];
    layout();
    loadAll().then(function () {
      if (mine !== token) return;
      filtering = false;
      var keep = matcher(), out = [];
      for (var c = 0; c < chunks.length; c++) {
        var rows = chunks[c] || [];
        for (var i = 0; i < rows.length; i++) if (keep(rows[i])) out.push(rows[i]);
      }
      if (state.sort !== "path") out.sort(comparator());
      view = out;
      layout();
    });
  }

  // ---------------------------------------------------------------------------------------------------
  // The virtualized grid: absolutely placed cards for the rows on screen (plus a small buffer) only.

  function total() { return view === null ? META.total : view.length; }

  function columns() {
    var width = grid.clientWidth, cols = Math.max(1, Math.floor((width + GAP) / (MIN_W + GAP)));
    colW = Math.max(MIN_W, Math.floor((width - (cols - 1) * GAP) / cols)) + GAP;
    return cols;
  }

  function rowAt(i) {
    if (view !== null) return view[i];
    if (state.sort === "-path") i = META.total - 1 - i;
    var c = Math.floor(i / META.chunk), rows = chunks[c];
    if (!rows) { loadChunk(c).then(schedule, function () {}); return undefined; }
    return rows[i - c * META.chunk];
  }

  function layout() {
    var n = total(), cols = columns();
    grid.style.height = Math.ceil(n / cols) * ROW_H + "px";
    var busy = filtering;
    grid.setAttribute("aria-busy", busy ? "true" : "false");
    emptyEl.hidden = n > 0 || busy;
    if (!busy) {
      countEl.textContent = view === null
        ? fmtInt(n) + " records"
        : fmtInt(n) + " of " + fmtInt(META.total) + " records match";
    }
    render();
  }

  function schedule() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(function () { scheduled = false; render(); });
  }

  function render() {
    var n = total(), cols = columns();
    var top = -grid.getBoundingClientRect().top;
    var first = Math.max(0, Math.floor(top / ROW_H) - BUFFER_ROWS);
    var last = Math.ceil((top + window.innerHeight) / ROW_H) + BUFFER_ROWS;
    var frag = document.createDocumentFragment();
    for (var row = first; row <= last; row++) {
      for (var col = 0; col < cols; col++) {
        var i = row * cols + col;
        if (i >= n) break;
        var card = cardFor(rowAt(i));
        card.style.width = colW - GAP + "px";
        card.style.transform = "translate(" + col * colW + "px," + row * ROW_H + "px)";
        frag.appendChild(card);
      }
    }
    grid.replaceChildren(frag);
  }

  function cardFor(r) {
    if (!r) { var wait = el("article", "card loading", "loading…"); return wait; }
    var ok = r[KIND] === 0;
    var card = el("article", ok ? "card ok" : "card err");
    var thumb = r[THUMB];
    if (thumb && THUMB_NAME.test(thumb)) {
      var img = el("img", "thumb");
      img.alt = "";
      img.decoding = "async";
      img.src = "thumbs/" + thumb;
      card.appendChild(img);
    } else {
      card.appendChild(el("div", "nothumb", "no preview"));
    }
    var line = el("div", "line");
    if ((META.tasks || []).length > 1) line.appendChild(el("span", "badge task", META.tasks[r[TASK]]));
    line.appendChild(el("span", "badge", ok ? "ok" : META.kinds[r[KIND]] + (r[HTTP] ? " " + r[HTTP] : "")));
    for (var f = 0; f < r[FLAGS].length; f++) line.appendChild(el("span", "badge flag", META.flags[r[FLAGS][f]]));
    if (r[LATENCY] !== null) line.appendChild(el("span", "muted", fmtSeconds(r[LATENCY])));
    if (r[ATTEMPTS] > 1) line.appendChild(el("span", "muted", r[ATTEMPTS] + " tries"));
    if (typeof r[COST] === "number") line.appendChild(el("span", "muted cost", fmtMoney(r[COST])));
    card.appendChild(line);
    var path = el("p", "path", r[PATH]);
    path.title = r[PATH];
    card.appendChild(path);
    var cap = el("p", "cap", r[TEXT] || (ok ? "(empty caption)" : "(no reason given)"));
    cap.title = r[TEXT];
    card.appendChild(cap);
    return card;
  }

  // ---------------------------------------------------------------------------------------------------
  // Header: counts, error breakdown, throughput chart (SVG built with DOM calls), run settings.

  function tile(value, label, cls, tip) {
    var t = el("div", "tile" + (cls ? " " + cls : ""));
    t.appendChild(el("b", null, value));
    t.appendChild(el("span", null, label));
    if (tip) t.title = tip;
    return t;
  }

  function header() {
    document.title = META.title;
    document.getElementById("title").textContent = META.title;
    var run = META.run || {};
    var sub = [META.journal];
    if (run.state) sub.push("run " + run.state);
    if (run.started_at) sub.push("started " + new Date(run.started_at * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC");
    document.getElementById("subtitle").textContent = sub.join(" · ");
    var ok = META.kind_counts[0] || 0, errors = META.total - ok;
    var tp = META.throughput;
    var summary = document.getElementById("summary");
    summary.appendChild(tile(fmtInt(META.total), "images"));
    summary.appendChild(tile(fmtInt(ok), "captioned", "ok"));
    summary.appendChild(tile(fmtInt(errors), "errors", errors ? "err" : ""));
    summary.appendChild(tile(fmtBytes(META.bytes_sent), "sent"));
    if (META.cost) {
      summary.appendChild(tile(fmtMoney(META.cost.usd), "spent"));
      summary.appendChild(tile(fmtMoney(META.cost.per_1000_images), "per 1,000 images"));
    }
    if (tp.busy_s > 0) {
      // One definition, the run summary's and the manifest's (batchcap/journal/throughput.py); the tooltip says it.
      var runs = tp.invocations > 1 ? "busy, " + fmtInt(tp.invocations) + " runs" : "busy";
      var tip = tp.definition + (tp.idle_s > 0 ? " (" + fmtSeconds(tp.idle_s) + " between runs left out)" : "") +
        "; from the " + tp.source;
      summary.appendChild(tile(fmtSeconds(tp.busy_s), runs, null, tip));
      summary.appendChild(tile(tp.per_s.toFixed(1) + "/s", "images per second", null, tip));
    }
    summary.appendChild(tile(fmtSeconds(META.latency.p50), "median latency"));
    summary.appendChild(tile(fmtSeconds(META.latency.p95), "p95 latency"));
    if (ok) summary.appendChild(tile(Math.round(META.caption_chars / ok), "chars per caption"));
    if (META.bad_lines || META.refused) summary.appendChild(tile(fmtInt(META.bad_lines + META.refused), "lines skipped (not records / unsafe paths)", "err"));

    var list = document.getElementById("breakdown");
    var any = false;
    for (var k = 1; k < META.kinds.length; k++) { list.appendChild(breakdownItem("e:" + META.kinds[k], META.kinds[k], META.kind_counts[k])); any = true; }
    for (var f = 0; f < META.flags.length; f++) { list.appendChild(breakdownItem("f:" + META.flags[f], "flag: " + META.flags[f], META.flag_counts[f])); any = true; }
    if (!any) list.appendChild(el("li", "muted", "no errors"));
    chart(document.getElementById("chart"));
    settings(document.getElementById("settings-table"), run);
  }

  function breakdownItem(value, label, count) {
    var li = el("li");
    var b = el("button", null, label);
    b.type = "button";
    b.addEventListener("click", function () { state.status = value; statusEl.value = value; apply(); });
    li.appendChild(b);
    li.appendChild(el("span", "muted", fmtInt(count)));
    return li;
  }

  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    for (var k in attrs) node.setAttribute(k, String(attrs[k]));
    return node;
  }

  function chart(box) {
    var tp = META.throughput, n = tp.ok.length, W = 600, H = 120, PAD = 26;
    if (!tp.t0 || !n) { box.appendChild(el("p", "muted", "no timestamps in the journal")); return; }
    var max = 0;
    for (var i = 0; i < n; i++) max = Math.max(max, (tp.ok[i] + tp.errors[i]) / tp.bin_s);
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", preserveAspectRatio: "none" });
    var title = svg("title", {});
    title.textContent = "images per second over the busy time of the runs (red: errors)" +
      (tp.idle_s > 0 ? "; the " + fmtSeconds(tp.idle_s) + " between runs are left out" : "");
    root.appendChild(title);
    var bw = (W - PAD) / n;
    for (var j = 0; j < n; j++) {
      var okH = max ? ((tp.ok[j] / tp.bin_s) / max) * (H - 18) : 0;
      var errH = max ? ((tp.errors[j] / tp.bin_s) / max) * (H - 18) : 0;
      root.appendChild(svg("rect", { "class": "bar", x: PAD + j * bw, y: H - 14 - okH, width: Math.max(1, bw - 1), height: okH }));
      if (errH) root.appendChild(svg("rect", { "class": "bar err", x: PAD + j * bw, y: H - 14 - okH - errH, width: Math.max(1, bw - 1), height: errH }));
    }
    var top = svg("text", { x: 0, y: 10 }); top.textContent = max.toFixed(1) + "/s"; root.appendChild(top);
    var zero = svg("text", { x: 0, y: H - 14 }); zero.textContent = "0"; root.appendChild(zero);
    var end = svg("text", { x: W, y: H - 2, "text-anchor": "end" }); end.textContent = fmtSeconds(tp.bin_s * n); root.appendChild(end);
    var start = svg("text", { x: PAD, y: H - 2 }); start.textContent = "0 s"; root.appendChild(start);
    box.appendChild(root);
  }

  function settings(table, run) {
    var rows = [];
    ["state", "version", "elapsed_s", "abort_reason"].forEach(function (k) { if (run[k] !== undefined && run[k] !== null) rows.push([k, run[k]]); });
    if (run.counts) Object.keys(run.counts).forEach(function (k) { rows.push(["counts." + k, run.counts[k]]); });
    var cfg = run.config || {};
    Object.keys(cfg).sort().forEach(function (k) { if (cfg[k] !== null && cfg[k] !== "") rows.push([k, cfg[k]]); });
    if (!rows.length) { document.getElementById("settings").hidden = true; return; }
    rows.forEach(function (kv) {
      var tr = el("tr");
      tr.appendChild(el("td", null, kv[0]));
      tr.appendChild(el("td", null, typeof kv[1] === "object" ? JSON.stringify(kv[1]) : kv[1]));
      table.appendChild(tr);
    });
  }

  function statusOptions() {
    function add(value, label) { var o = el("option", null, label); o.value = value; statusEl.appendChild(o); }
    var ok = META.kind_counts[0] || 0;
    add("all", "all (" + fmtInt(META.total) + ")");
    add("ok", "ok (" + fmtInt(ok) + ")");
    if (META.total - ok) add("error", "any error (" + fmtInt(META.total - ok) + ")");
    for (var k = 1; k < META.kinds.length; k++) add("e:" + META.kinds[k], META.kinds[k] + " (" + fmtInt(META.kind_counts[k]) + ")");
    for (var f = 0; f < META.flags.length; f++) add("f:" + META.flags[f], "flag: " + META.flags[f] + " (" + fmtInt(META.flag_counts[f]) + ")");
  }

  function taskOptions() {
    // One answer per task and image: the filter shows one task's answers (hidden when the run had one task).
    var tasks = META.tasks || [];
    function add(value, label) { var o = el("option", null, label); o.value = value; taskEl.appendChild(o); }
    add("all", "every task");
    for (var t = 0; t < tasks.length; t++) add(tasks[t], "task: " + tasks[t] + " (" + fmtInt((META.task_counts || [])[t]) + ")");
    taskEl.hidden = tasks.length < 2;
  }

  function start() {
    grid = document.getElementById("grid");
    countEl = document.getElementById("count");
    emptyEl = document.getElementById("empty");
    qEl = document.getElementById("q");
    statusEl = document.getElementById("status");
    sortEl = document.getElementById("sort");
    taskEl = document.getElementById("task");
    if (!META) { countEl.textContent = "data/meta.js is missing: rebuild with batchcap report"; return; }
    statusOptions();
    taskOptions();
    header();
    readHash();
    var typing = 0;
    qEl.addEventListener("input", function () {
      clearTimeout(typing);
      typing = setTimeout(function () { state.q = qEl.value; apply(); }, 120);
    });
    statusEl.addEventListener("change", function () { state.status = statusEl.value; apply(); });
    sortEl.addEventListener("change", function () { state.sort = sortEl.value; apply(); });
    taskEl.addEventListener("change", function () { state.task = taskEl.value; apply(); });
    window.addEventListener("scroll", schedule, { passive: true });
    window.addEventListener("resize", function () { layout(); });
    window.addEventListener("hashchange", function () { readHash(); apply(); });
    apply();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
