// The rule-set page's groups editor (templates/rules/_groups_fields.html): add and remove
// group and band rows from the page's <template>s, and offer the typed group names in the
// grade grid's two selects. The server validates everything (the engine's rules); this only
// makes rows. Rows are numbered in their field names; gaps are fine, empty rows are dropped.
(function () {
  "use strict";
  function nextNumber(holder) {
    var number = parseInt(holder.dataset.next || "0", 10);
    holder.dataset.next = String(number + 1);
    return String(number);
  }
  function fromTemplate(form, id, replacements) {
    var html = form.querySelector("#" + id).innerHTML;
    Object.keys(replacements).forEach(function (key) {
      html = html.split(key).join(replacements[key]);
    });
    var holder = document.createElement("div");
    holder.innerHTML = html.trim();
    return holder.firstElementChild;
  }
  function refreshGrid(form) {
    var names = [];
    form.querySelectorAll("[data-group-name]").forEach(function (input) {
      var name = input.value.trim();
      if (name && names.indexOf(name) < 0) { names.push(name); }
    });
    form.querySelectorAll("[data-grid-select]").forEach(function (select) {
      var chosen = select.value;
      select.innerHTML = "";
      [""].concat(names).forEach(function (name) {
        var option = document.createElement("option");
        option.value = name;
        option.textContent = name || "\u2014";
        option.selected = name === chosen;
        select.appendChild(option);
      });
    });
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button");
    var form = button && button.closest("form.groups-fields");
    if (!form) { return; }
    if (button.hasAttribute("data-add-group")) {
      var list = form.querySelector("[data-group-list]");
      var row = fromTemplate(form, "group-row-template", { "__G__": nextNumber(list) });
      list.appendChild(row);
      row.querySelector("input").focus();
    } else if (button.hasAttribute("data-add-band")) {
      var bands = button.parentElement.querySelector(":scope > [data-bands]");
      var band = fromTemplate(form, "band-row-template", {
        "__P__": bands.dataset.prefix, "__B__": nextNumber(bands)
      });
      bands.appendChild(band);
      band.querySelector("input").focus();
    } else if (button.hasAttribute("data-remove")) {
      button.closest("[data-row]").remove();
      refreshGrid(form);
    }
  });
  document.addEventListener("input", function (event) {
    if (event.target.hasAttribute && event.target.hasAttribute("data-group-name")) {
      refreshGrid(event.target.closest("form"));
    }
  });
})();
