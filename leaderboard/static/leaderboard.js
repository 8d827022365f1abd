// synthbench leaderboard: filters (board, protocol, backbone, track) and sortable tables.
// Plain JavaScript, no dependencies, so the site works from file:// and any static host.
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
  });
})();
