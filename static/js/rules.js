// Rule pages: confirm publish, rollback and discard, and show only the inputs of the chosen
// rule kind (charts.js draws the preview's figures).
(function () {
  "use strict";
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
})();
