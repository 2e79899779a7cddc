// riskwatch console: charts. Each `.chart[data-chart]` carries its data as JSON (rendered and escaped by the
// server); this draws it with the vendored ECharts (no CDN, no inline script). When a chart has drawn,
// its element gets data-rendered="1" (the browser tests wait for it).
//
// Charts are drawn on page load and again whenever htmx brings new content (`htmx:load`): the board's rows
// are re-rendered on every alarm event and each row's trend arrives as its own fragment. Charts whose
// element left the page are disposed, so a long-open board does not pile up instances.
//
// A readings chart: `series` (each `{name, data, axis?, limits?, parts?}`), `limits` and `marks` drawn on the
// first series, `notes` named above. A series on `axis: 1` (a difference a − b beside the point) gets a
// right-hand axis and its own `limits`; one with `parts` carries rows [t, a − b, a, b] and the tooltip shows
// both values it was taken from.
(function () {
  "use strict";
  if (typeof echarts === "undefined") { return; }
  var LIMIT_COLOURS = { hihi: "#c62828", hi: "#ef6c00", lo: "#ef6c00", lolo: "#c62828" };
  var MARK_COLOUR = "#5b6475";
  var live = [];

  function limitLine(l) {
    return { name: l.name, yAxis: l.value, lineStyle: { color: LIMIT_COLOURS[l.kind] || "#c62828", type: "dashed" },
             label: { formatter: l.name + " " + l.value, position: "insideEndTop" } };
  }

  function enc(s) { return echarts.format && echarts.format.encodeHTML ? echarts.format.encodeHTML(String(s))
                                                                        : String(s).replace(/[&<>"']/g, ""); }

  function num(v) { return typeof v === "number" ? String(+v.toFixed(3)) : "-"; }

  // the tooltip of a chart holding a difference: each Δ with the two values it is taken from ("Δ 6.1 =
  // FT-601 36.2 − FT-602 30.1"); names come from the registry, so they are HTML-encoded
  function deltaTooltip(series) {
    return function (ps) {
      ps = [].concat(ps);
      var head = ps.length ? (echarts.time && echarts.time.format
        ? echarts.time.format(ps[0].axisValue, "{yyyy}-{MM}-{dd} {HH}:{mm}:{ss}", true) : "") : "";
      return [enc(head)].concat(ps.map(function (p) {
        var s = series[p.seriesIndex] || {}, v = [].concat(p.value);
        if (!s.parts) { return p.marker + enc(p.seriesName) + " " + num(v[1]); }
        return p.marker + "Δ " + num(v[1]) + " = " + enc(s.parts[0]) + " " + num(v[2]) + " − " + enc(s.parts[1]) + " " +
               num(v[3]);
      })).join("<br>");
    };
  }

  // an axis end that holds the data and every limit, rounded to two significant digits of the span: the
  // axis labels its exact ends, and 35.55125 does not fit a phone's narrow axis where 35.55 does
  function bound(v, lims, low) {
    var lo = Math.min.apply(null, [v.min].concat(lims)), hi = Math.max.apply(null, [v.max].concat(lims));
    var span = hi - lo || Math.abs(hi) || 1, e = Math.floor(Math.log(span) / Math.LN10) - 1, step = Math.pow(10, e);
    var x = low ? Math.floor(lo / step) * step : Math.ceil(hi / step) * step;
    return +x.toFixed(Math.max(0, -e));
  }

  function readingsOption(d) {
    var compact = !!d.compact;
    var lines = (d.limits || []).map(limitLine);
    // vertical marks: the activation (and the return to normal) on the time axis
    (d.marks || []).forEach(function (m) {
      lines.push({ name: m.name, xAxis: m.x, lineStyle: { color: MARK_COLOUR, type: "solid", width: 1 },
                   label: { formatter: m.name, position: "insideEndTop", color: MARK_COLOUR } });
    });
    var src = d.series || [];
    // each y axis spans its series and every limit drawn on it, so no limit line falls outside the chart;
    // axis 1 (right) holds differences beside the point's own line
    var lims = [(d.limits || []).map(function (l) { return l.value; }), []];
    src.forEach(function (s) { (s.limits || []).forEach(function (l) { lims[s.axis === 1 ? 1 : 0].push(l.value); }); });
    var right = src.some(function (s) { return s.axis === 1; });
    var series = src.map(function (s, i) {
      var o = { name: s.name, type: "line", showSymbol: false, data: s.data, yAxisIndex: s.axis === 1 ? 1 : 0 };
      if (s.parts) { o.encode = { x: 0, y: 1 }; }
      var own = (i === 0 ? lines : []).concat((s.limits || []).map(limitLine));
      if (own.length) { o.markLine = { symbol: "none", silent: true, data: own }; }
      return o;
    });
    var notes = (d.notes || []).join(" · ");
    function axis(k) {
      return { type: "value", scale: true, position: k ? "right" : "left", splitLine: { show: !k },
               splitNumber: compact ? 3 : 5,
               min: function (v) { return bound(v, lims[k], true); },
               max: function (v) { return bound(v, lims[k], false); } };
    }
    var opt = { animation: false, useUTC: true, tooltip: { trigger: "axis", confine: true },
                grid: compact ? { left: 44, right: right ? 40 : 12, top: notes ? 28 : 12, bottom: right ? 40 : 24 }
                              : { left: 48, right: right ? 48 : 24, top: 32, bottom: 32 },
                xAxis: { type: "time", axisLabel: { hideOverlap: true } },
                yAxis: right ? [axis(0), axis(1)] : axis(0),
                series: series };
    if (src.some(function (s) { return s.parts; })) { opt.tooltip.formatter = deltaTooltip(src); }
    // a compact chart names its lines only when it has two axes (the point and a difference), below the plot
    // a full chart's legend sits under the notes (the limits it names but does not draw), not over them
    if (!compact) { opt.legend = { type: "scroll", top: notes ? 18 : 0 }; opt.grid.top = notes ? 52 : 32; } else if (right) {
      opt.legend = { type: "scroll", bottom: 0, itemHeight: 8, textStyle: { fontSize: 10 } };
    }
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
    // a tooltip is first laid out beside the pointer before it is moved inside: on a phone, one shown near
    // the right edge would widen the page for good (the layout viewport grows to the overflow) unless clipped
    el.style.overflow = "hidden";
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
