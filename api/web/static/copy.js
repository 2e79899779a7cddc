// riskwatch console: copy buttons. A button with data-copy="#element-id" copies that element's text (a
// gateway's password, the connection snippet) to the clipboard. Plain script from riskwatch itself: the CSP
// allows no inline script. Without the Clipboard API (a plain-HTTP address other than localhost) the text is
// selected instead, so Ctrl+C / long-press copies it.
(function () {
  "use strict";
  function select(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }
  function done(button) {
    var label = button.textContent;
    button.textContent = button.dataset.copied || "OK";
    button.dataset.state = "copied";
    setTimeout(function () { button.textContent = label; delete button.dataset.state; }, 2000);
  }
  document.addEventListener("click", function (ev) {
    var button = ev.target.closest ? ev.target.closest("button[data-copy]") : null;
    if (!button) { return; }
    var el = document.querySelector(button.dataset.copy);
    if (!el) { return; }
    var text = el.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(button); }, function () { select(el); });
    } else {
      select(el);
      try { if (document.execCommand("copy")) { done(button); } } catch (e) { /* selected: copy by hand */ }
    }
  });
})();
