// riskwatch console: the enterprise risk board. The cards poll every 30 s (htmx, `hx-trigger` on
// #risk-cards); this also re-fetches them soon after an alarm event of the viewer's scope arrives on the
// event stream, so an urgent alarm colours its enterprise without waiting for the next poll. The cards
// are rendered by the server with the viewer's scope: the page never assembles rating data itself.
(function () {
  "use strict";
  var root = document.getElementById("risk");
  if (!root || typeof EventSource === "undefined" || typeof htmx === "undefined") { return; }
  var timer = null;

  function soon() {  // a burst of alarm events makes one fetch, a second later (their commit settles)
    if (timer !== null) { return; }
    timer = setTimeout(function () { timer = null; htmx.trigger(document.body, "rw-risk-refresh"); }, 1000);
  }

  var es = new EventSource(root.dataset.events);
  es.addEventListener("alarm", soon);
  es.addEventListener("refresh", soon);
  es.addEventListener("error", function () { if (es.readyState === EventSource.CLOSED) { soon(); } });
  es.addEventListener("ended", function () { es.close(); window.location.href = document.body.dataset.login; });
})();
