// The desk's own script: progressive enhancement only. Every page works without it.
// - a live inbox: the desk's server-sent events say "changed"; htmx then fetches the list.
"use strict";
(function () {
  document.documentElement.classList.add("schakel-scripted");
  document.addEventListener("DOMContentLoaded", function () {
    document.body.classList.add("schakel-scripted");
    var live = document.querySelector("[data-live]");
    if (live && window.EventSource) {
      var source = new EventSource(live.getAttribute("data-live"));
      source.addEventListener("changed", function () {
        document.body.dispatchEvent(new CustomEvent("inbox-changed"));
      });
      window.addEventListener("pagehide", function () { source.close(); });
    }
  });
})();
