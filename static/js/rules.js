// Rule pages: show only the inputs of the chosen rule kind, and draw the plotly figures that
// the page embeds with json_script (also after htmx swaps in the preview's results).
(function () {
  "use strict";
  function draw(root) {
    if (!window.Plotly) { return; }
    root.querySelectorAll("[data-figure]").forEach(function (el) {
      var source = document.getElementById(el.dataset.figure);
      if (!source || el.dataset.drawn) { return; }
      var figure = JSON.parse(source.textContent);
      window.Plotly.newPlot(el, figure.data, figure.layout, { responsive: true, displaylogo: false });
      el.dataset.drawn = "1";
    });
  }
  // Publish, rollback and discard ask first, saying what they will do (the form's
  // data-confirm, written by the server); a plain listener, so it works on forms htmx swapped
  // in and needs no inline script.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var text = form && form.dataset ? form.dataset.confirm : "";
    if (text && !window.confirm(text)) { event.preventDefault(); }
  }, true);
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.name === "kind" && target.form && target.form.classList.contains("item-form")) {
      target.form.dataset.kind = target.value;
    }
  });
  document.addEventListener("htmx:afterSettle", function (event) { draw(event.target); });
  window.addEventListener("load", function () { draw(document); });
})();
