// riskwatch console: charts. Each `.chart[data-chart]` carries its data as JSON (rendered and escaped by the
// server); this draws it with the vendored ECharts (no CDN, no inline script). When a chart has drawn,
// its element gets data-rendered="1" (the browser tests wait for it).
//
// Charts are drawn on page load and again whenever htmx brings new content (`htmx:load`): the board's rows
// are re-rendered on every alarm event and each row's trend arrives as its own fragment. Charts whose
// element left the page are disposed, so a long-open board does not pile up instances.
(function () {
  "use strict";
  if (typeof echarts === "undefined") { return; }
  var LIMIT_COLOURS = { hihi: "#c62828", hi: "#ef6c00", lo: "#ef6c00", lolo: "#c62828" };
  var MARK_COLOUR = "#5b6475";
  var live = [];

  function readingsOption(d) {
    var compact = !!d.compact;
    var lines = (d.limits || []).map(function (l) {
      return { name: l.name, yAxis: l.value, lineStyle: { color: LIMIT_COLOURS[l.kind] || "#c62828", type: "dashed" },
               label: { formatter: l.name + " " + l.value, position: "insideEndTop" } };
    });
    // vertical marks: the activation (and the return to normal) on the time axis
    (d.marks || []).forEach(function (m) {
      lines.push({ name: m.name, xAxis: m.x, lineStyle: { color: MARK_COLOUR, type: "solid", width: 1 },
                   label: { formatter: m.name, position: "insideEndTop", color: MARK_COLOUR } });
    });
    var lims = (d.limits || []).map(function (l) { return l.value; });
    var series = (d.series || []).map(function (s, i) {
      var o = { name: s.name, type: "line", showSymbol: false, data: s.data };
      if (i === 0 && lines.length) { o.markLine = { symbol: "none", silent: true, data: lines }; }
      return o;
    });
    var notes = (d.notes || []).join(" · ");
    // the axis spans the readings and every limit, so no limit line falls outside the chart
    var opt = { animation: false, useUTC: true, tooltip: { trigger: "axis" },
                grid: compact ? { left: 44, right: 12, top: notes ? 28 : 12, bottom: 24 }
                              : { left: 48, right: 24, top: 32, bottom: 32 },
                xAxis: { type: "time", axisLabel: { hideOverlap: true } },
                yAxis: { type: "value", scale: true,
                         min: function (v) { return Math.min.apply(null, [v.min].concat(lims)); },
                         max: function (v) { return Math.max.apply(null, [v.max].concat(lims)); } },
                series: series };
    if (!compact) { opt.legend = { type: "scroll", top: 0 }; }
    if (notes) { opt.title = { text: notes, left: "right", top: 0, textStyle: { fontSize: 11, fontWeight: "normal",
                                                                             color: MARK_COLOUR } }; }
    return opt;
  }

  function trendOption(d) {
    return { animation: false, tooltip: { trigger: "axis" }, legend: { type: "scroll", top: 0 },
             grid: { left: 40, right: 16, top: 32, bottom: 32 },
             xAxis: { type: "category", data: d.x.map(function (t) { return t.slice(5, 10); }) },
             yAxis: { type: "value", minInterval: 1 },
             series: d.series.map(function (s) { return { name: s.name, type: "line", step: "end", data: s.data }; }) };
  }

  function prune() {
    live = live.filter(function (c) {
      if (document.body.contains(c.getDom())) { return true; }
      c.dispose();
      return false;
    });
  }

  function draw(el) {
    if (el.dataset.drawn) { return; }
    var d;
    try { d = JSON.parse(el.dataset.chart); } catch (e) { return; }
    el.dataset.drawn = "1";
    var chart = echarts.init(el, null, { renderer: "canvas" });
    chart.on("finished", function () { el.dataset.rendered = "1"; });
    chart.setOption(d.kind === "trend" ? trendOption(d) : readingsOption(d));
    live.push(chart);
  }

  function drawIn(root) {
    prune();
    var scope = root && root.querySelectorAll ? root : document;
    if (scope.matches && scope.matches(".chart[data-chart]")) { draw(scope); }
    scope.querySelectorAll(".chart[data-chart]").forEach(draw);
  }

  drawIn(document);
  document.addEventListener("htmx:load", function (ev) { drawIn(ev.target); });
  document.addEventListener("htmx:afterSwap", function (ev) { drawIn(ev.target); });
  window.addEventListener("resize", function () { prune(); live.forEach(function (c) { c.resize(); }); });
})();
