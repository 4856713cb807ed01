// Small helpers over server-rendered forms; every form also works without them.
(function () {
  "use strict";
  function valueOf(form, name) {
    var inputs = form.querySelectorAll('[name="' + CSS.escape(name) + '"]');
    var out = [];
    inputs.forEach(function (i) {
      if (i.disabled) return;
      if ((i.type === "checkbox" || i.type === "radio") && !i.checked) return;
      if (i.type === "checkbox" && i.value === "on") { out.push("true"); return; }
      if (i.value !== "") out.push(i.value);
    });
    return out;
  }
  // Fields shown on a condition (if/then, dependentRequired): hidden ones are disabled so
  // they are not posted, and required only while shown.
  function applyConditions(form) {
    form.querySelectorAll("[data-show-if]").forEach(function (box) {
      var values = valueOf(form, box.dataset.showIf);
      var show = box.hasAttribute("data-equals") ? values.indexOf(box.dataset.equals) >= 0 : values.length > 0;
      box.hidden = !show;
      box.querySelectorAll("input, select, textarea").forEach(function (i) {
        i.disabled = !show;
        if (i.type !== "checkbox" && i.type !== "file") i.required = show;
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var summary = document.getElementById("error-summary");
    if (summary) summary.focus();
    // Each unit may have its own version of a form (its overlays): show that unit's.
    document.querySelectorAll("select[data-switch-unit]").forEach(function (select) {
      select.addEventListener("change", function () {
        location.search = "?unit=" + encodeURIComponent(select.value);
      });
    });
    document.querySelectorAll("form").forEach(function (form) {
      applyConditions(form);
      form.addEventListener("change", function () { applyConditions(form); });
      form.addEventListener("click", function (e) {
        var add = e.target.closest(".add-row");
        if (add) {
          var name = add.dataset.add;
          var rows = form.querySelector('[data-rows="' + CSS.escape(name) + '"]');
          var max = Number(rows.dataset.max || Infinity);
          if (rows.children.length >= max) return;
          // Indexes only grow, so a row added after a removal never takes a used name.
          var next = Number(rows.dataset.next || rows.children.length);
          rows.dataset.next = next + 1;
          var tpl = form.querySelector('template[data-template="' + CSS.escape(name) + '"]');
          var html = tpl.innerHTML.split("__i__").join(String(next));
          rows.insertAdjacentHTML("beforeend", html);
          applyConditions(form);
        }
        var remove = e.target.closest(".remove-row");
        if (remove) { remove.closest(".row").remove(); applyConditions(form); }
      });
      // A second tap on submit while the first is on its way would send the form twice.
      if (form.enctype !== "multipart/form-data") return;
      form.addEventListener("submit", function () {
        form.querySelectorAll("button[type=submit]").forEach(function (b) { setTimeout(function () { b.disabled = true; }, 0); });
      });
    });
  });
})();
