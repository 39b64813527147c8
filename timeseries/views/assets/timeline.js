// tsm timeline page: draws the chart from the JSON the server embedded (#chart-data) and moves T with
// the slider. Everything here is progressive enhancement: the tables and links work without it.
(function () {
  "use strict";
  var dataEl = document.getElementById("chart-data");
  var chartEl = document.getElementById("chart");
  if (!dataEl || !chartEl || typeof Plotly === "undefined") return;
  var d = JSON.parse(dataEl.textContent);

  function sizes(impacts) {
    return impacts.map(function (v) { return 7 + 18 * (v === null ? 0.2 : v); });
  }
  function lane(name, series, y, symbol, color, size) {
    return {
      type: "scatter", mode: "markers", name: name, x: series.x, y: series.x.map(function () { return y; }),
      text: series.text, hoverinfo: "x+text", yaxis: "y2",
      marker: { symbol: symbol, color: color, size: size || 11, line: { width: 1, color: "#fff" } }
    };
  }
  var traces = [
    { type: d.bars.x.length > 0 ? "candlestick" : "scatter", name: d.symbol, x: d.bars.x, open: d.bars.open, high: d.bars.high,
      low: d.bars.low, close: d.bars.close, yaxis: "y", increasing: { line: { color: "#1a7f37" } },
      decreasing: { line: { color: "#cf222e" } }, showlegend: false },
    lane("news (size: impact)", d.news, "news", "circle", "#1f6feb", sizes(d.news.impact)),
    lane("insider buy (at filing)", d.insider_buy, "insider", "triangle-up", "#1a7f37"),
    lane("insider sell (at filing)", d.insider_sell, "insider", "triangle-down", "#cf222e"),
    lane("insider other", d.insider_other, "insider", "diamond", "#8250df"),
    lane("government", d.government, "government", "square", "#bf8700"),
    { type: "bar", name: "volume", x: d.bars.x, y: d.bars.volume, yaxis: "y3", marker: { color: "#8c959f" }, showlegend: false },
    { type: "scatter", mode: "lines", name: "sentiment", x: d.sentiment.x, y: d.sentiment.y, yaxis: "y4",
      line: { color: "#8250df", width: 1.5 } }
  ];
  var layout = {
    margin: { l: 84, r: 20, t: 36, b: 40 },
    showlegend: true, legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom" },
    xaxis: { type: "date", range: [d.start, d.end], rangeslider: { visible: false }, anchor: "y4", title: { text: "UTC" } },
    yaxis: { domain: [0.52, 1], title: { text: "price" } },
    yaxis2: { domain: [0.38, 0.5], type: "category", categoryarray: ["government", "insider", "news"], fixedrange: true, automargin: true },
    yaxis3: { domain: [0.2, 0.36], title: { text: "volume" } },
    yaxis4: { domain: [0, 0.18], title: { text: "sentiment" }, range: [-1, 1] },
    shapes: [{ type: "line", xref: "x", yref: "paper", x0: d.at, x1: d.at, y0: 0, y1: 1, line: { color: "#24292f", dash: "dot", width: 1 } }],
    annotations: [{ x: d.at, y: 1, xref: "x", yref: "paper", text: "T", showarrow: false, yanchor: "bottom" }]
  };
  Plotly.newPlot(chartEl, traces, layout, { responsive: true, displaylogo: false }).then(function () {
    chartEl.setAttribute("data-ready", "true");
  });

  // slider: T anywhere in the chart window; moving it loads the page for the new T (URL names T)
  var slider = document.getElementById("slider");
  var label = document.getElementById("slider-label");
  if (!slider) return;
  var start = Date.parse(slider.dataset.start), end = Date.parse(slider.dataset.end), at = Date.parse(slider.dataset.at);
  var stepMs = 1000 * Number(slider.dataset.stepSeconds || 60);
  slider.value = String(Math.round(1000 * Math.min(1, Math.max(0, (at - start) / (end - start)))));
  function chosen() {
    var t = start + (end - start) * Number(slider.value) / 1000;
    return new Date(Math.round(t / stepMs) * stepMs);
  }
  function iso(date) { return date.toISOString().replace(".000Z", "Z"); }
  slider.addEventListener("input", function () { label.textContent = "T = " + iso(chosen()); });
  slider.addEventListener("change", function () {
    var params = new URLSearchParams(window.location.search);
    var t = chosen();
    params.set("at", iso(t));
    params.set("from", slider.dataset.start);
    params.set("to", slider.dataset.end);
    if (t.getTime() > at) params.set("since", slider.dataset.at); else params.delete("since");
    window.location.search = params.toString();
  });
})();
