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
  });
})();
