// synthbench leaderboard: filters (board, protocol, backbone, track), sortable tables, and charts drawn
// from the same rows as the tables (plotly.js, written into the built site: works from file:// too).
(function () {
  "use strict";

  // ---- sorting: click a column header to sort by it; click again to reverse -------------------
  function cellValue(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell ? (cell.getAttribute("data-value") !== null ? cell.getAttribute("data-value") : cell.textContent) : "";
    if (!numeric) return raw.trim().toLowerCase();
    var number = parseFloat(raw);
    return isNaN(number) ? null : number;
  }

  function sortTable(table, header) {
    var headers = Array.prototype.slice.call(header.parentNode.children);
    var index = headers.indexOf(header);
    var numeric = header.getAttribute("data-type") === "num";
    var current = header.getAttribute("aria-sort");
    // Numbers other than the rank read best-first (descending) on the first click.
    var descending = current ? current === "ascending" : numeric && index !== 0;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
      // Ties keep the board's own order (rank, then point estimate), whatever was clicked before.
      if (x === y) return a.originalIndex - b.originalIndex;
      if (x === null) return 1; // empty cells last whatever the direction
      if (y === null) return -1;
      var order = x < y ? -1 : 1;
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }

  function initSorting() {
    document.querySelectorAll("table.sortable").forEach(function (table) {
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row, i) { row.originalIndex = i; });
      table.querySelectorAll("thead th").forEach(function (header) {
        header.setAttribute("tabindex", "0");
        header.addEventListener("click", function () { sortTable(table, header); });
        header.addEventListener("keydown", function (event) {
          if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortTable(table, header); }
        });
      });
    });
  }

  // ---- charts: the ranked quantity of the rows the table shows ----------------------------------
  var PCT = 100;

  function chartTraces(data, rows) {
    var shown = data.entries.filter(function (e) { return rows.indexOf(e.submission) !== -1; }).reverse();
    var colours = shown.map(function (e) { return e.baseline ? "#7570b3" : "#1f78b4"; });
    return [{
      type: "scatter", mode: "markers", orientation: "h",
      x: shown.map(function (e) { return PCT * e.point; }),
      y: shown.map(function (e) { return e.name + "  [" + (e.ranked ? e.rank : "not ranked") + "]"; }),
      error_x: {
        type: "data", symmetric: false, color: "#333",
        array: shown.map(function (e) { return PCT * (e.hi - e.point); }),
        arrayminus: shown.map(function (e) { return PCT * (e.point - e.lo); })
      },
      marker: { color: colours, size: 9 },
      hovertemplate: "%{y}<br>%{x:.1f} [%{customdata}]<extra></extra>",
      customdata: shown.map(function (e) { return (PCT * e.lo).toFixed(1) + ", " + (PCT * e.hi).toFixed(1); })
    }];
  }

  function chartShapes(data) {
    var line = { color: "#555", width: 1.5 };
    if (data.delta) return [{ type: "line", xref: "x", yref: "paper", x0: 0, x1: 0, y0: 0, y1: 1, line: line }];
    if (!data.level) return [];
    var level = data.level;
    return [
      { type: "rect", xref: "x", yref: "paper", x0: PCT * level.ci[0], x1: PCT * level.ci[1], y0: 0, y1: 1,
        fillcolor: "rgba(85,85,85,0.12)", line: { width: 0 } },
      { type: "line", xref: "x", yref: "paper", x0: PCT * level.point, x1: PCT * level.point, y0: 0, y1: 1, line: line }
    ];
  }

  function drawChart(section) {
    var holder = section.querySelector("div.chart");
    var source = section.querySelector("script.chart-data");
    if (!holder || !source || !window.Plotly || section.hidden) return;
    var data = JSON.parse(source.textContent);
    var rows = Array.prototype.filter.call(section.querySelectorAll("tbody tr"), function (row) { return !row.hidden; })
      .map(function (row) { return row.getAttribute("data-submission"); });
    var traces = chartTraces(data, rows);
    holder.setAttribute("data-drawn", traces[0].x.length);
    window.Plotly.react(holder, traces, {
      height: 90 + 34 * Math.max(traces[0].x.length, 1),
      margin: { l: 230, r: 20, t: 10, b: 50 },
      xaxis: { title: { text: data.axis, font: { size: 12 } }, zeroline: false, gridcolor: "#e5e5e5" },
      yaxis: { automargin: true },
      shapes: chartShapes(data), showlegend: false, font: { family: "DejaVu Sans, sans-serif", size: 12 }
    }, { displayModeBar: false, responsive: true, staticPlot: false });
  }

  function drawCharts() {
    document.querySelectorAll("section.view").forEach(drawChart);
  }

  // ---- entry page: per-class Δ F1 on a diverging scale centred at 0, the CI in the tooltip ---------
  function drawHeatmaps() {
    if (!window.Plotly) return;
    document.querySelectorAll("div.heatmap").forEach(function (holder) {
      var data = JSON.parse(holder.parentNode.querySelector("script.heatmap-data").textContent);
      var bound = 1;
      data.z.forEach(function (row) { row.forEach(function (v) { bound = Math.max(bound, Math.abs(v)); }); });
      window.Plotly.react(holder, [{
        type: "heatmap", x: data.classes, y: data.settings, z: data.z, customdata: data.ci,
        zmin: -bound, zmax: bound, zmid: 0, colorscale: [[0, "#b2182b"], [0.5, "#f7f7f7"], [1, "#2166ac"]],
        colorbar: { title: { text: "Δ F1 (pp)" } }, xgap: 1, ygap: 1,
        hovertemplate: "%{y} · %{x}<br>Δ F1 %{z:+.1f} pp, 95% CI %{customdata}<extra></extra>",
        text: data.text, texttemplate: "%{text}", textfont: { size: 11 }
      }], {
        height: 120 + 34 * data.settings.length, margin: { l: 100, r: 20, t: 10, b: 70 },
        yaxis: { autorange: "reversed" }, font: { family: "DejaVu Sans, sans-serif", size: 12 }
      }, { displayModeBar: false, responsive: true });
      holder.setAttribute("data-drawn", data.settings.length);
    });
  }

  // ---- diagnostics page: a chosen diagnostic against each entry's Δ, for the rows the filters keep -----
  function diagnosticRows(view, diagnostic, track) {
    return view.entries.filter(function (e) {
      return (track === "*" || e.track === track) && e.diagnostics[diagnostic];
    });
  }

  function renderDiagnostics(views) {
    var view = views.filter(function (v) { return v.id === document.getElementById("diag-view").value; })[0];
    var diagnostic = document.getElementById("diag-name").value;
    var track = document.getElementById("diag-track").value;
    var rows = diagnosticRows(view, diagnostic, track);
    var body = document.querySelector("#diag-table tbody");
    body.innerHTML = "";
    rows.forEach(function (e) {
      var d = e.diagnostics[diagnostic], tr = document.createElement("tr");
      tr.setAttribute("data-submission", e.submission);
      [e.name, d[0].toPrecision(3) + " [" + d[1].toPrecision(3) + ", " + d[2].toPrecision(3) + "]",
       fmt(e.delta[0]) + " [" + fmt(e.delta[1]) + ", " + fmt(e.delta[2]) + "]"].forEach(function (text) {
        var td = document.createElement("td"); td.textContent = text; tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    var missing = view.entries.length - diagnosticRows(view, diagnostic, "*").length;
    document.getElementById("diag-missing").textContent = missing ?
      missing + " entr" + (missing > 1 ? "ies" : "y") + " of this board without this diagnostic (not computed) are not plotted." : "";
    document.getElementById("diag-description").textContent = document.getElementById("diag-name").selectedOptions[0].title;
    window.location.replace("#" + [view.id, diagnostic, track].map(encodeURIComponent).join("/"));
    var holder = document.getElementById("diag-chart");
    holder.setAttribute("data-drawn", rows.length);
    if (!window.Plotly) return;
    // Room around the points (and their CIs) so that the entries' names are not cut at the edges.
    var ends = [];
    rows.forEach(function (e) { ends.push(e.diagnostics[diagnostic][1], e.diagnostics[diagnostic][2]); });
    var low = Math.min.apply(null, ends), high = Math.max.apply(null, ends), pad = 0.15 * ((high - low) || Math.abs(high) || 1);
    window.Plotly.react(holder, [{
      type: "scatter", mode: "markers+text", text: rows.map(function (e) { return e.name; }), textposition: "top center",
      x: rows.map(function (e) { return e.diagnostics[diagnostic][0]; }),
      y: rows.map(function (e) { return PCT * e.delta[0]; }),
      error_x: { type: "data", symmetric: false, color: "#999",
                 array: rows.map(function (e) { var d = e.diagnostics[diagnostic]; return d[2] - d[0]; }),
                 arrayminus: rows.map(function (e) { var d = e.diagnostics[diagnostic]; return d[0] - d[1]; }) },
      error_y: { type: "data", symmetric: false, color: "#999",
                 array: rows.map(function (e) { return PCT * (e.delta[2] - e.delta[0]); }),
                 arrayminus: rows.map(function (e) { return PCT * (e.delta[0] - e.delta[1]); }) },
      marker: { size: 10, color: rows.map(function (e) { return e.baseline ? "#7570b3" : "#1f78b4"; }) },
      hovertemplate: "%{text}<br>" + diagnostic + " %{x:.3g}<br>Δ %{y:+.1f} pp<extra></extra>"
    }], {
      height: 460, margin: { l: 70, r: 20, t: 20, b: 60 }, showlegend: false,
      xaxis: { title: { text: diagnostic + " (95% CI)" }, gridcolor: "#e5e5e5", zeroline: false,
               range: rows.length ? [low - pad, high + pad] : undefined },
      yaxis: { title: { text: view.metric }, gridcolor: "#e5e5e5", zeroline: false },
      shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: 0, y1: 0, line: { color: "#555", width: 1.5 } }],
      font: { family: "DejaVu Sans, sans-serif", size: 12 }
    }, { displayModeBar: false, responsive: true });
  }

  function initDiagnostics() {
    var source = document.getElementById("diagnostics-data");
    if (!source) return;
    var views = JSON.parse(source.textContent);
    var parts = window.location.hash.replace(/^#/, "").split("/").map(decodeURIComponent);
    ["diag-view", "diag-name", "diag-track"].forEach(function (id, i) {
      var select = document.getElementById(id);
      if (parts.length === 3 && Array.prototype.some.call(select.options, function (o) { return o.value === parts[i]; })) {
        select.value = parts[i];
      }
      select.addEventListener("change", function () { renderDiagnostics(views); });
    });
    renderDiagnostics(views);
  }

  // ---- compare page: A - B per setting, from the paired differences the build computed ------------
  function fmt(value) { return (value >= 0 ? "+" : "\u2212") + Math.abs(PCT * value).toFixed(1); }

  function pairOf(board, a, b) {
    var direct = board.pairs[a + "|" + b];
    if (direct) return function (row) { return direct[row]; };
    var reverse = board.pairs[b + "|" + a];  // A - B = -(B - A): negate and swap the bounds
    return function (row) { var v = reverse[row]; return [-v[0], -v[2], -v[1]]; };
  }

  function renderCompare(boards) {
    var board = boards.filter(function (c) { return c.id === document.getElementById("compare-board").value; })[0];
    var a = document.getElementById("compare-a").value, b = document.getElementById("compare-b").value;
    var body = document.querySelector("#compare-table tbody");
    body.innerHTML = "";
    document.getElementById("compare-metric").textContent = "(" + board.metric + ")";
    if (a === b) {
      body.innerHTML = "<tr><td colspan=\"4\">Choose two different entries.</td></tr>";
      return;
    }
    var get = pairOf(board, a, b);
    var values = board.rows.map(get);
    board.rows.forEach(function (row, i) {
      var v = values[i], tr = document.createElement("tr");
      var reading = v[1] > 0 ? "A better" : v[2] < 0 ? "B better" : "no significant difference";
      [row, fmt(v[0]), "[" + fmt(v[1]) + ", " + fmt(v[2]) + "]", reading].forEach(function (text) {
        var td = document.createElement("td"); td.textContent = text; tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    window.location.replace("#" + [board.id, a, b].map(encodeURIComponent).join("/"));
    if (!window.Plotly) return;
    window.Plotly.react("compare-chart", [{
      type: "scatter", mode: "markers", x: board.rows, y: values.map(function (v) { return PCT * v[0]; }),
      error_y: { type: "data", symmetric: false, array: values.map(function (v) { return PCT * (v[2] - v[0]); }),
                 arrayminus: values.map(function (v) { return PCT * (v[0] - v[1]); }), color: "#333" },
      marker: { size: 10, color: "#1f78b4" }
    }], {
      height: 320, margin: { l: 70, r: 20, t: 10, b: 50 }, showlegend: false,
      yaxis: { title: { text: "A − B, " + board.metric }, zeroline: false, gridcolor: "#e5e5e5" },
      shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: 0, y1: 0, line: { color: "#555", width: 1.5 } }]
    }, { displayModeBar: false, responsive: true });
  }

  function fillEntries(boards) {
    var board = boards.filter(function (c) { return c.id === document.getElementById("compare-board").value; })[0];
    ["compare-a", "compare-b"].forEach(function (id, i) {
      var select = document.getElementById(id);
      select.innerHTML = "";
      board.entries.forEach(function (name) {
        var option = document.createElement("option"); option.value = option.textContent = name; select.appendChild(option);
      });
      select.value = board.entries[Math.min(i, board.entries.length - 1)];
    });
  }

  function initCompare() {
    var source = document.getElementById("compare-data");
    if (!source) return;
    var boards = JSON.parse(source.textContent);
    var parts = window.location.hash.replace(/^#/, "").split("/").map(decodeURIComponent);
    var boardSelect = document.getElementById("compare-board");
    if (boards.some(function (c) { return c.id === parts[0]; })) boardSelect.value = parts[0];
    fillEntries(boards);
    ["compare-a", "compare-b"].forEach(function (id, i) {
      var select = document.getElementById(id);
      if (parts.length === 3 && Array.prototype.some.call(select.options, function (o) { return o.value === parts[i + 1]; })) {
        select.value = parts[i + 1];
      }
    });
    boardSelect.addEventListener("change", function () { fillEntries(boards); renderCompare(boards); });
    document.getElementById("compare-a").addEventListener("change", function () { renderCompare(boards); });
    document.getElementById("compare-b").addEventListener("change", function () { renderCompare(boards); });
    renderCompare(boards);
  }

  // ---- filters --------------------------------------------------------------------------------
  function matches(value, wanted) {
    return value === "*" || wanted === "*" || value === wanted;
  }

  function applyFilters() {
    var board = document.getElementById("filter-board").value;
    var protocol = document.getElementById("filter-protocol").value;
    var backbone = document.getElementById("filter-backbone").value;
    var track = document.getElementById("filter-track").value;
    var shown = 0;
    document.querySelectorAll("section.view").forEach(function (section) {
      var visible = matches(section.getAttribute("data-board"), board) &&
        matches(section.getAttribute("data-protocol"), protocol) &&
        matches(section.getAttribute("data-backbone"), backbone);
      section.hidden = !visible;
      if (visible) shown += 1;
      section.querySelectorAll("tbody tr").forEach(function (row) {
        var rowTrack = row.getAttribute("data-track");
        row.hidden = !(track === "*" || rowTrack === track || rowTrack === "reference");
      });
    });
    document.getElementById("no-view").hidden = shown > 0;
    drawCharts();
    var state = [board, protocol, backbone, track].map(encodeURIComponent).join("/");
    if (window.history && window.history.replaceState) {
      window.history.replaceState(null, "", "#" + state);
    }
  }

  function restoreFilters() {
    var parts = window.location.hash.replace(/^#/, "").split("/");
    if (parts.length !== 4) return;
    ["filter-board", "filter-protocol", "filter-backbone", "filter-track"].forEach(function (id, i) {
      var select = document.getElementById(id);
      var value = decodeURIComponent(parts[i]);
      if (Array.prototype.some.call(select.options, function (o) { return o.value === value; })) select.value = value;
    });
  }

  function initFilters() {
    var form = document.getElementById("filters");
    if (!form) return;
    form.hidden = false;
    restoreFilters();
    form.addEventListener("change", applyFilters);
    applyFilters();
  }

  document.addEventListener("DOMContentLoaded", function () {
    initSorting();
    initFilters();
    if (!document.getElementById("filters")) drawCharts();
    initCompare();
    drawHeatmaps();
    initDiagnostics();
  });
})();
