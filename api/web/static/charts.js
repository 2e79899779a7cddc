// riskwatch console: charts. Each `.chart[data-chart]` carries its data as JSON (rendered and escaped by the
// server); this draws it with the vendored ECharts (no CDN, no inline script). When a chart has drawn,
// its element gets data-rendered="1" (the browser tests wait for it).
(function () {
  "use strict";
  if (typeof echarts === "undefined") { return; }
  var LIMIT_COLOURS = { hihi: "#c62828", hi: "#ef6c00", lo: "#ef6c00", lolo: "#c62828" };

  function readingsOption(d) {
    var lines = (d.limits || []).map(function (l) {
      return { name: l.name, yAxis: l.value, lineStyle: { color: LIMIT_COLOURS[l.kind] || "#c62828", type: "dashed" },
               label: { formatter: l.name + " " + l.value, position: "insideEndTop" } };
    });
    var lims = (d.limits || []).map(function (l) { return l.value; });
    var series = (d.series || []).map(function (s, i) {
      var o = { name: s.name, type: "line", showSymbol: false, data: s.data };
      if (i === 0 && lines.length) { o.markLine = { symbol: "none", silent: true, data: lines }; }
      return o;
    });
    // the axis spans the readings and every limit, so no limit line falls outside the chart
    return { animation: false, useUTC: true, tooltip: { trigger: "axis" }, legend: { type: "scroll", top: 0 },
             grid: { left: 48, right: 24, top: 32, bottom: 32 }, xAxis: { type: "time", axisLabel: { hideOverlap: true } },
             yAxis: { type: "value", scale: true,
                      min: function (v) { return Math.min.apply(null, [v.min].concat(lims)); },
                      max: function (v) { return Math.max.apply(null, [v.max].concat(lims)); } },
             series: series };
  }

  function trendOption(d) {
    return { animation: false, tooltip: { trigger: "axis" }, legend: { type: "scroll", top: 0 },
             grid: { left: 40, right: 16, top: 32, bottom: 32 },
             xAxis: { type: "category", data: d.x.map(function (t) { return t.slice(5, 10); }) },
             yAxis: { type: "value", minInterval: 1 },
             series: d.series.map(function (s) { return { name: s.name, type: "line", step: "end", data: s.data }; }) };
  }

  document.querySelectorAll(".chart[data-chart]").forEach(function (el) {
    var d;
    try { d = JSON.parse(el.dataset.chart); } catch (e) { return; }
    var chart = echarts.init(el, null, { renderer: "canvas" });
    chart.on("finished", function () { el.dataset.rendered = "1"; });
    chart.setOption(d.kind === "trend" ? trendOption(d) : readingsOption(d));
    window.addEventListener("resize", function () { chart.resize(); });
  });
})();
