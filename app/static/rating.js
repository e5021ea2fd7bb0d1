/* Keeps the rating form's progress in this browser only (localStorage), never on the
   server: a server-side draft would tie the rater to their answers. Works without it. */
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
  var progress = document.getElementById("rating-progress");

  function requiredGroups() {
    var names = {};
    form.querySelectorAll("input[type=radio][required]").forEach(function (input) { names[input.name] = true; });
    return Object.keys(names);
  }

  function showProgress() {
    if (!progress) { return; }
    var groups = requiredGroups();
    var answered = groups.filter(function (name) {
      return form.querySelector("input[type=radio][name='" + name + "']:checked");
    }).length;
    progress.textContent = progress.getAttribute("data-template")
      .replace("%(done)s", answered).replace("%(total)s", groups.length);
    progress.hidden = false;
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
      });
    });
  }

  restore();
  showProgress();
  var timer = null;
  form.addEventListener("change", function () { save(); showProgress(); });
  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(save, 400);
  });
  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }
})();
