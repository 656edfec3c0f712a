// Herald console: a little script where it helps. Every page works without it.
(function () {
  "use strict";
  var lang = document.documentElement.lang === "ja" ? "ja" : "en";
  var words = {
    ja: { ago: function (m) { return m + "分前"; }, left: function (m) { return "あと" + m + "分"; }, over: function (m) { return "超過 " + m + "分"; } },
    en: { ago: function (m) { return m + " min ago"; }, left: function (m) { return "in " + m + " min"; }, over: function (m) { return "overdue " + m + " min"; } }
  }[lang];

  function minutes(ms) { return Math.floor(Math.abs(ms) / 60000); }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var left = Number(el.dataset.deadline) - now;
      el.classList.toggle("overdue", left < 0);
      el.textContent = left < 0 ? words.over(minutes(left)) : words.left(minutes(left));
    });
    document.querySelectorAll("[data-since]").forEach(function (el) {
      el.textContent = words.ago(minutes(now - Number(el.dataset.since)));
    });
  }

  // Forms that need a second thought (publishing to N recipients, discarding a draft).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var submitter = event.submitter;
    var message = (submitter && submitter.dataset.confirm) || form.dataset.confirm;
    if (message && !window.confirm(message)) { event.preventDefault(); }
  });

  // Live delivery progress: the server renders the fragment, the page swaps it in.
  function follow(el) {
    var url = el.dataset.live;
    var every = Number(el.dataset.every || 2000);
    function load() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) { el.innerHTML = html; } })
        .catch(function () {})
        .then(function () { window.setTimeout(load, every); });
    }
    window.setTimeout(load, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    window.setInterval(tick, 1000);
    document.querySelectorAll("[data-live]").forEach(follow);
  });
})();
