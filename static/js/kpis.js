// KPI dashboard: draws each plotly figure from the JSON the page embeds with json_script
// (no inline scripts), and follows a point's customdata URL on click (click-through to the
// leads behind it).
(function () {
  "use strict";

  function hasPoints(figure) {
    return (figure.data || []).some(function (trace) {
      var values = trace.x || trace.y || trace.median || [];
      return values.length > 0;
    });
  }

  function draw(element) {
    var source = document.getElementById(element.dataset.figure);
    if (!source) { return; }
    var figure = JSON.parse(source.textContent);
    if (figure.empty || !hasPoints(figure)) {
      // Nothing to draw: say so instead of drawing empty axes.
      element.setAttribute("data-empty", "");
      element.classList.add("no-data");
      element.textContent = "No data yet";
      element.setAttribute("data-rendered", "");
      return;
    }
    window.Plotly.newPlot(element, figure.data, figure.layout, {
      responsive: true,
      displaylogo: false,
    }).then(function () {
      element.setAttribute("data-rendered", "");
    });
    element.on("plotly_click", function (event) {
      var point = event.points && event.points[0];
      var url = point && (point.customdata || (point.data.customdata || [])[0]);
      if (typeof url === "string" && url.charAt(0) === "/") { window.location.assign(url); }
    });
  }

  function init() {
    if (!window.Plotly) { return; }
    document.querySelectorAll(".kpi-chart[data-figure]").forEach(draw);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
