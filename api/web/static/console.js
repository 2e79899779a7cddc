// riskwatch console: the live alarm board. The server pushes one event per committed alarm transition
// (server-sent events fed by PostgreSQL LISTEN/NOTIFY); the board then re-fetches its rows, rendered by
// the server with the viewer's scope, so the page never assembles alarm data itself.
(function () {
  "use strict";
  var board = document.getElementById("board");
  if (!board || typeof EventSource === "undefined") { return; }
  var rowsUrl = board.dataset.rows;
  var target = document.getElementById("alarm-rows");
  var status = document.getElementById("live-status");
  var texts = document.getElementById("live-texts");
  var loginUrl = document.body.dataset.login;
  var inflight = false, again = false, deferred = false;

  function setStatus(state) {
    status.dataset.state = state;
    status.textContent = texts ? (texts.dataset[state] || state) : state;
  }

  function typing() {
    var el = document.activeElement;
    return el && target.contains(el) && (el.tagName === "INPUT" || el.tagName === "SELECT");
  }

  function refresh() {
    if (typing()) { deferred = true; return; }  // never wipe a note being written; refresh when it is left
    if (inflight) { again = true; return; }
    inflight = true;
    htmx.ajax("GET", rowsUrl, { target: target, swap: "innerHTML" }).finally(function () {
      inflight = false;
      if (again) { again = false; refresh(); }
    });
  }

  // typing() is checked when a fetch starts, but a fetch already in flight when the user starts writing
  // lands later: its swap would replace the row and wipe the note (and a click on the new, empty form's
  // button submits nothing). Hold such a swap back; the refresh runs once the note is left.
  document.addEventListener("htmx:beforeSwap", function (evt) {  // fired on the request's source, not the target
    if (evt.detail.target === target && typing()) { evt.detail.shouldSwap = false; deferred = true; }
  });

  target.addEventListener("focusout", function () {
    if (deferred) { deferred = false; setTimeout(refresh, 0); }
  });

  var es = new EventSource(board.dataset.events);
  es.addEventListener("open", function () { setStatus("live"); });
  es.addEventListener("error", function () {
    setStatus("reconnecting");
    // a refused stream (401: session ended) is not retried by the browser; the row fetch then
    // answers 401 with HX-Redirect and htmx takes the user to the login page
    if (es.readyState === EventSource.CLOSED) { refresh(); }
  });
  es.addEventListener("alarm", refresh);
  es.addEventListener("refresh", refresh);
  es.addEventListener("ended", function () { es.close(); window.location.href = loginUrl; });
})();
