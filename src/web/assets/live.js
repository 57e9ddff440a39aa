// metaguard live page: append hits from the server-sent events at /live/events to
// #live-feed. Text only (textContent): nothing from the network becomes markup.
(function () {
  "use strict";
  var feed = document.getElementById("live-feed");
  if (!feed || !window.EventSource) { return; }
  var max = 200;
  var src = new EventSource("/live/events" + window.location.search);
  var status = document.getElementById("live-status");
  function span(cls, text) {
    var s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    return s;
  }
  src.addEventListener("open", function () { if (status) { status.textContent = "connected"; } });
  src.addEventListener("error", function () { if (status) { status.textContent = "reconnecting…"; } });
  src.addEventListener("hit", function (ev) {
    var h;
    try { h = JSON.parse(ev.data); } catch (e) { return; }
    var li = document.createElement("li");
    li.className = "hit";
    var t = new Date(h.ts * 1000);
    li.appendChild(span("hit-time muted", t.toLocaleTimeString()));
    // The name links to the Lists page's check: why it got its verdict, and allow it.
    var a = document.createElement("a");
    a.className = "hit-name";
    a.href = "/lists?name=" + encodeURIComponent(h.name) + "&client=" +
      encodeURIComponent(String(h.key || "").replace(/^(ip|mac):/, ""));
    a.textContent = h.name;
    li.appendChild(a);
    var meta = span("hit-meta", "");
    meta.appendChild(span("hit-device", h.device));
    meta.appendChild(document.createTextNode(" · "));
    meta.appendChild(span("hit-category", h.category));
    meta.appendChild(document.createTextNode(" · "));
    meta.appendChild(span("hit-action " + (h.action === "block" ? "blocked" : "logged"), h.action));
    li.appendChild(meta);
    feed.insertBefore(li, feed.firstChild);
    while (feed.children.length > max) { feed.removeChild(feed.lastChild); }
  });
})();
