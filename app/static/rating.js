/* The rating form's helpers; the form works without them. Progress is kept in this
   browser only (localStorage), never on the server: a server-side draft would tie the
   rater to their answers. Also: the answered count as text, "Next unanswered". */
(function () {
  "use strict";
  var PREFIX = "p360-progress:";

  function storage() {
    try { return window.localStorage; } catch (e) { return null; }
  }

  var store = storage();
  var done = document.querySelector("[data-clear-progress]");
  if (done && store) {
    try { store.removeItem(PREFIX + done.getAttribute("data-clear-progress")); } catch (e) { /* ignore */ }
  }

  var form = document.querySelector("form[data-progress-key]");
  if (!form) { return; }
  // An empty key: a shared kiosk, where nothing typed may stay in the browser.
  if (!form.getAttribute("data-progress-key")) { store = null; }
  var key = PREFIX + form.getAttribute("data-progress-key");
  var count = form.querySelector(".progress-count");
  var next = form.querySelector("button.next-unanswered");

  function requiredGroups() {
    var names = [];
    var seen = {};
    form.querySelectorAll("input[type=radio][required]").forEach(function (input) {
      if (!seen[input.name]) { seen[input.name] = true; names.push(input.name); }
    });
    return names;
  }

  function isAnswered(name) {
    return !!form.querySelector("input[type=radio][name='" + CSS.escape(name) + "']:checked");
  }

  function showProgress() {
    if (!count) { return; }
    // Replaces the CSS counter with text that assistive technology reads for sure.
    count.textContent = String(requiredGroups().filter(isAnswered).length);
    count.classList.add("live");
  }

  function jumpToNextUnanswered() {
    var name = requiredGroups().filter(function (n) { return !isAnswered(n); })[0];
    var target = name
      ? form.querySelector("input[type=radio][name='" + CSS.escape(name) + "']")
      : form.querySelector("button[type=submit]");
    if (!target) { return; }
    var row = target.closest("fieldset") || target;
    row.scrollIntoView({ block: "center" });
    target.focus({ preventScroll: true });
  }

  function save() {
    if (!store) { return; }
    var state = {};
    form.querySelectorAll("input[type=radio]:checked").forEach(function (input) { state[input.name] = input.value; });
    form.querySelectorAll("textarea").forEach(function (area) { if (area.value) { state[area.name] = area.value; } });
    try { store.setItem(key, JSON.stringify(state)); } catch (e) { /* full or disabled */ }
  }

  function restore() {
    // After a server-side error the page already holds everything typed: keep it.
    if (!store || form.getAttribute("data-restore") !== "1") { return; }
    var state;
    try { state = JSON.parse(store.getItem(key) || "{}"); } catch (e) { return; }
    Object.keys(state).forEach(function (name) {
      var value = String(state[name]);
      var fields = form.querySelectorAll("[name='" + CSS.escape(name) + "']");
      fields.forEach(function (field) {
        if (field.type === "radio" && field.value === value) { field.checked = true; }
        if (field.tagName === "TEXTAREA" && !field.value) { field.value = value; }
        // An optional answer kept from before: show it rather than hide it folded.
        var extras = field.closest("details");
        if (extras && value) { extras.open = true; }
      });
    });
  }

  restore();
  showProgress();
  if (next) {
    next.hidden = false;
    next.addEventListener("click", jumpToNextUnanswered);
  }
  var timer = null;
  form.addEventListener("change", function () { save(); showProgress(); });
  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(save, 400);
  });
  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }
})();
