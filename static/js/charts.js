// Every plotly chart of every page: an element with data-figure="ID" gets the figure stored
// (by Django's json_script filter, so no inline script) in <script type="application/json"
// id="ID">, including figures htmx swaps in later. plotly (most of a page's bytes) is fetched
// only after the page's load event, from the URL in this script tag's data-plotly: the page
// shows its numbers first and the charts fill in. A figure with nothing to draw says "No data
// yet" instead of drawing empty axes; a point whose customdata is a path links to it (the
// KPI click-through to the leads behind a bar). A drawn chart gets data-rendered.
(function () {
  "use strict";
  var plotlyUrl = document.currentScript.dataset.plotly;
  var waiting = [];
  var requested = false;

  function withPlotly(callback) {
    if (window.Plotly) { callback(); return; }
    waiting.push(callback);
    if (requested) { return; }
    requested = true;
    var fetchPlotly = function () {
      var script = document.createElement("script");
      script.src = plotlyUrl;
      script.onload = function () { waiting.splice(0).forEach(function (run) { run(); }); };
      script.onerror = function () {
        waiting.length = 0;
        document.querySelectorAll("[data-figure]:not([data-rendered])").forEach(function (el) {
          el.classList.add("no-data");
          el.textContent = "The chart could not be loaded: reload the page to try again.";
        });
      };
      document.head.appendChild(script);
    };
    if (document.readyState === "complete") {
      fetchPlotly();
    } else {
      window.addEventListener("load", fetchPlotly);
    }
  }

  function hasPoints(figure) {
    return (figure.data || []).some(function (trace) {
      var values = trace.x || trace.y || trace.median || [];
      return values.length > 0;
    });
  }

  function draw(element) {
    var source = document.getElementById(element.dataset.figure);
    if (!source || element.hasAttribute("data-rendered")) { return; }
    var figure = JSON.parse(source.textContent);
    if (figure.empty || !hasPoints(figure)) {
      element.classList.add("no-data");
      element.textContent = "No data yet";
      element.setAttribute("data-empty", "");
      element.setAttribute("data-rendered", "");
      return;
    }
    withPlotly(function () {
      window.Plotly.newPlot(element, figure.data, figure.layout, {
        responsive: true,
        displaylogo: false,
      }).then(function () { element.setAttribute("data-rendered", ""); });
      element.on("plotly_click", function (event) {
        var point = event.points && event.points[0];
        var url = point && (point.customdata || (point.data.customdata || [])[0]);
        if (typeof url === "string" && url.charAt(0) === "/") { window.location.assign(url); }
      });
    });
  }

  function drawWithin(root) {
    root.querySelectorAll("[data-figure]").forEach(draw);
  }

  document.addEventListener("htmx:afterSettle", function (event) { drawWithin(event.target); });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { drawWithin(document); });
  } else {
    drawWithin(document);
  }
})();
