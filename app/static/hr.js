// HR pages: small progressive enhancements. Everything works without this file.
(function () {
  "use strict";
  // "Copy" buttons next to secrets shown once (a new API key, a generated password).
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target || !navigator.clipboard) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(target.textContent.trim()).then(function () {
        button.textContent = button.getAttribute("data-done") || "Copied";
      });
    });
  });
})();
