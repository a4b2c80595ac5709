/* matinee dashboard: confirmations and charts. Data comes from <script type="application/json"> blocks. */
(function () {
  "use strict";

  function readJson(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  var COLORS = ["#2f6fbd", "#d9822b", "#2f9e5b", "#c43d3d", "#7d5ba6", "#8c6d31", "#d45fa0", "#6b6b6b", "#1fa0a8", "#b5a300"];
  var CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  function layout(title, extra) {
    var base = {
      title: { text: title, font: { size: 14 }, x: 0, xanchor: "left" },
      margin: { l: 56, r: 16, t: 40, b: 40 }, height: 280,
      font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#333" },
      paper_bgcolor: "#fff", plot_bgcolor: "#fff",
      xaxis: { gridcolor: "#eee", zeroline: false }, yaxis: { gridcolor: "#eee", zeroline: false },
      legend: { orientation: "h", y: -0.2 }
    };
    return Object.assign(base, extra || {});
  }

  function chartBox(container) {
    var div = document.createElement("div");
    div.className = "chart";
    container.appendChild(div);
    return div;
  }

  function metricCharts(container) {
    var data = readJson(container.dataset.series);
    if (!data) { return; }
    var overlay = container.dataset.mode === "overlay";
    Object.keys(data).sort().forEach(function (name) {
      var traces;
      if (overlay) {
        traces = Object.keys(data[name]).map(function (run, i) {
          var s = data[name][run];
          return { x: s.x, y: s.y, name: run, type: "scatter", mode: s.x.length > 1 ? "lines+markers" : "markers",
                   marker: { size: 5, color: COLORS[i % COLORS.length] }, line: { color: COLORS[i % COLORS.length] } };
        });
      } else {
        var s = data[name];
        traces = [{ x: s.x, y: s.y, name: name, type: "scatter", mode: s.x.length > 1 ? "lines+markers" : "markers",
                    marker: { size: 5, color: COLORS[0] }, line: { color: COLORS[0] } }];
      }
      var box = chartBox(container);
      box.dataset.metric = name;
      window.Plotly.newPlot(box, traces, layout(name, { showlegend: overlay, xaxis: { title: { text: "step" }, gridcolor: "#eee" } }), CONFIG);
    });
  }

  function effectsChart(el) {
    var data = readJson(el.dataset.effects);
    if (!data || !data.effects.length) { return; }
    var e = data.effects;
    var trace = {
      type: "scatter", mode: "markers", y: e.map(function (d) { return d.label; }), x: e.map(function (d) { return d.diff; }),
      marker: { size: 10, color: COLORS[0] },
      error_x: { type: "data", symmetric: false, array: e.map(function (d) { return d.high - d.diff; }),
                 arrayminus: e.map(function (d) { return d.diff - d.low; }) }
    };
    window.Plotly.newPlot(el, [trace], layout("Effect of each treatment (difference with its interval)", {
      height: 120 + 40 * e.length, margin: { l: 200, r: 24, t: 40, b: 40 },
      shapes: [{ type: "line", x0: 0, x1: 0, yref: "paper", y0: 0, y1: 1, line: { color: "#999", dash: "dot" } }]
    }), CONFIG);
  }

  function armsChart(el) {
    var data = readJson(el.dataset.arms);
    if (!data || !data.arms.length) { return; }
    var a = data.arms;
    var trace = {
      type: "bar", x: a.map(function (d) { return d.arm; }), y: a.map(function (d) { return d.value; }),
      marker: { color: a.map(function (d, i) { return COLORS[i % COLORS.length]; }) },
      error_y: { type: "data", symmetric: false, visible: a.some(function (d) { return d.low !== null; }),
                 array: a.map(function (d) { return d.high === null ? 0 : d.high - d.value; }),
                 arrayminus: a.map(function (d) { return d.low === null ? 0 : d.value - d.low; }) }
    };
    window.Plotly.newPlot(el, [trace], layout(data.metric + " per arm (95% interval where it applies)", { height: 300 }), CONFIG);
  }

  function banditCharts(el) {
    var data = readJson(el.dataset.bandits);
    if (!data) { return; }
    var traces = [];
    if (el.dataset.panel === "time") {
      data.policies.forEach(function (p, i) {
        var color = COLORS[i % COLORS.length];
        var t = p.t.map(function (s) { return new Date(s * 1000); });
        traces.push({ x: t, y: p.bucket_mean, name: p.name, legendgroup: p.name, type: "scatter", mode: "markers",
                      marker: { color: color, size: 6, opacity: 0.6 } });
        traces.push({ x: t, y: p.cumulative, name: p.name + " (cumulative)", legendgroup: p.name, type: "scatter",
                      mode: "lines", line: { color: color } });
      });
      window.Plotly.newPlot(el, traces, layout("Reward over time per policy (markers: per time bucket; line: cumulative mean)",
        { height: 340, yaxis: { title: { text: "mean reward" }, gridcolor: "#eee" } }), CONFIG);
      return;
    }
    var names = data.policies.map(function (p) { return p.name; });
    traces.push({ x: names, y: data.policies.map(function (p) { return p.reward; }), name: "observed online", type: "scatter",
                  mode: "markers", marker: { size: 11, color: "#c43d3d" },
                  error_y: { type: "data", symmetric: false, array: data.policies.map(function (p) { return p.high - p.reward; }),
                             arrayminus: data.policies.map(function (p) { return p.reward - p.low; }) } });
    var withEstimate = data.policies.filter(function (p) { return p.estimate && p.estimate.value !== null; });
    if (withEstimate.length) {
      traces.push({ x: withEstimate.map(function (p) { return p.name; }), y: withEstimate.map(function (p) { return p.estimate.value; }),
                    name: "off-policy estimate (DR, offline)", type: "scatter", mode: "markers", marker: { size: 11, color: "#2f6fbd" },
                    error_y: { type: "data", symmetric: false,
                               array: withEstimate.map(function (p) { return p.estimate.high === null ? 0 : p.estimate.high - p.estimate.value; }),
                               arrayminus: withEstimate.map(function (p) { return p.estimate.low === null ? 0 : p.estimate.value - p.estimate.low; }) } });
    }
    window.Plotly.newPlot(el, traces, layout("Observed reward vs off-policy estimate, with 95% intervals",
      { height: 320, scattermode: "group" }), CONFIG);
  }

  function opeChart(el) {
    var data = readJson(el.dataset.ope);
    var ope = data && data.ope ? data.ope[parseInt(el.dataset.index, 10)] : null;
    if (!ope) { return; }
    var traces = ope.estimators.map(function (name, i) {
      var rows = ope.policies.filter(function (p) { return p.estimates[name]; });
      return {
        type: "scatter", mode: "markers", orientation: "h", name: name.toUpperCase(),
        y: rows.map(function (p) { return p.policy; }),
        x: rows.map(function (p) { return p.estimates[name].value; }), marker: { size: 9, color: COLORS[i % COLORS.length] },
        error_x: { type: "data", symmetric: false,
                   array: rows.map(function (p) { var e = p.estimates[name]; return e.high === null ? 0 : e.high - e.value; }),
                   arrayminus: rows.map(function (p) { var e = p.estimates[name]; return e.low === null ? 0 : e.value - e.low; }) }
      };
    });
    window.Plotly.newPlot(el, traces, layout("Estimated value of each policy, with intervals (" + ope.run + ")", {
      height: 140 + 46 * ope.policies.length, margin: { l: 200, r: 24, t: 40, b: 40 }, scattermode: "group",
      yaxis: { autorange: "reversed", gridcolor: "#eee" }
    }), CONFIG);
  }

  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        var alias = form.querySelector("input[name=alias]");
        var message = form.dataset.confirm.replace("ALIAS", alias ? alias.value : "");
        if (!window.confirm(message)) { event.preventDefault(); }
      });
    });
  }

  function liveRefresh() {
    var seconds = parseInt(document.body.dataset.refresh || "0", 10);
    if (!seconds) { return; }
    function tick() {
      var active = document.activeElement;
      if (document.hidden || (active && active.matches("input, select, textarea"))) {
        window.setTimeout(tick, seconds * 1000);  // not while hidden or while someone types
        return;
      }
      window.location.reload();
    }
    window.setTimeout(tick, seconds * 1000);
  }

  function start() {
    confirmations();
    liveRefresh();
    if (!window.Plotly) { return; }
    document.querySelectorAll(".charts[data-series]").forEach(metricCharts);
    document.querySelectorAll(".chart[data-effects]").forEach(effectsChart);
    document.querySelectorAll(".chart[data-arms]").forEach(armsChart);
    document.querySelectorAll(".chart[data-bandits]").forEach(banditCharts);
    document.querySelectorAll(".chart[data-ope]").forEach(opeChart);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
