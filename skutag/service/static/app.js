// skutag review dashboard: searchable category picker and keyboard shortcuts. No inline scripts (CSP).
(function () {
  "use strict";
  var dataNode = document.getElementById("categories");
  var categories = dataNode ? JSON.parse(dataNode.textContent) : [];
  var MAX_OPTIONS = 12;

  function matches(query) {
    var tokens = query.toLowerCase().split(/[\s>]+/).filter(Boolean);
    if (!tokens.length) return categories.slice(0, MAX_OPTIONS);
    var scored = [];
    for (var i = 0; i < categories.length; i++) {
      var path = categories[i], lower = path.toLowerCase(), ok = true;
      for (var t = 0; t < tokens.length; t++) { if (lower.indexOf(tokens[t]) < 0) { ok = false; break; } }
      if (!ok) continue;
      var leaf = lower.split(" > ").pop();
      var score = (leaf.indexOf(tokens[0]) === 0 ? 0 : leaf.indexOf(tokens[0]) >= 0 ? 1 : 2) * 1000 + path.length;
      scored.push([score, path]);
    }
    scored.sort(function (a, b) { return a[0] - b[0] || (a[1] < b[1] ? -1 : 1); });
    return scored.slice(0, MAX_OPTIONS).map(function (s) { return s[1]; });
  }

  function setupPicker(form) {
    var input = form.querySelector("input.picker");
    var list = form.querySelector("ul.options");
    if (!input || !list) return;
    var active = -1;

    function options() { return list.querySelectorAll("li"); }
    function close() { list.hidden = true; input.setAttribute("aria-expanded", "false"); active = -1; }
    function highlight(index) {
      var items = options();
      if (!items.length) return;
      active = (index + items.length) % items.length;
      for (var i = 0; i < items.length; i++) items[i].setAttribute("aria-selected", i === active ? "true" : "false");
      input.setAttribute("aria-activedescendant", items[active].id);
      items[active].scrollIntoView({ block: "nearest" });
    }
    function choose(path, submit) {
      input.value = path;
      close();
      if (submit) form.requestSubmit ? form.requestSubmit() : form.submit();
    }
    function render() {
      var found = matches(input.value);
      list.textContent = "";
      found.forEach(function (path, i) {
        var li = document.createElement("li");
        li.id = list.id + "-" + i;
        li.setAttribute("role", "option");
        li.textContent = path;  // textContent: category names are never parsed as HTML
        li.addEventListener("mousedown", function (event) { event.preventDefault(); choose(path, true); });
        list.appendChild(li);
      });
      list.hidden = found.length === 0;
      input.setAttribute("aria-expanded", found.length ? "true" : "false");
      active = -1;
      if (found.length) highlight(0);
    }
    input.addEventListener("input", render);
    input.addEventListener("focus", render);
    input.addEventListener("blur", function () { setTimeout(close, 150); });
    input.addEventListener("keydown", function (event) {
      if (event.key === "ArrowDown") { event.preventDefault(); if (list.hidden) render(); else highlight(active + 1); }
      else if (event.key === "ArrowUp") { event.preventDefault(); highlight(active - 1); }
      else if (event.key === "Enter") {
        var items = options();
        if (!list.hidden && active >= 0 && items[active]) { event.preventDefault(); choose(items[active].textContent, true); }
      } else if (event.key === "Escape") {
        close(); input.blur();
        var card = form.closest(".item"); if (card) card.focus();
      }
    });
  }

  document.querySelectorAll("[data-picker]").forEach(setupPicker);

  // keyboard: j/k move between items, a accepts, c or / opens the picker of the focused item
  var items = Array.prototype.slice.call(document.querySelectorAll(".queue .item"));
  function current() { return items.indexOf(document.activeElement.closest ? document.activeElement.closest(".item") : null); }
  function focusItem(index) {
    if (!items.length) return;
    var i = Math.max(0, Math.min(items.length - 1, index));
    items[i].focus();
    items[i].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || event.ctrlKey || event.metaKey || event.altKey) return;
    var index = current();
    if (event.key === "j") { event.preventDefault(); focusItem(index + 1); }
    else if (event.key === "k") { event.preventDefault(); focusItem(index < 0 ? 0 : index - 1); }
    else if ((event.key === "a") && index >= 0) {
      var accept = items[index].querySelector("form.accept");
      if (accept) { event.preventDefault(); accept.requestSubmit ? accept.requestSubmit() : accept.submit(); }
    } else if ((event.key === "c" || event.key === "/") && index >= 0) {
      var picker = items[index].querySelector("input.picker");
      if (picker) { event.preventDefault(); picker.focus(); }
    }
  });
  if (items.length && (document.activeElement === document.body || !document.activeElement)) items[0].focus();
})();
