// Confirmations: a form with data-confirm asks before it posts. Here, not
// in onsubmit attributes, because the Content-Security-Policy allows no
// inline script. Listening on the document covers forms that live refresh
// puts in later.
document.addEventListener("submit", function (e) {
  var msg = e.target.dataset && e.target.dataset.confirm;
  if (msg && !window.confirm(msg)) e.preventDefault();
});

// Live refresh: every data-refresh ms, fetch this URL with ?fragment=1 and
// swap #live's content. 0 (or no JavaScript) turns it off.
(function () {
  var live = document.getElementById("live");
  if (!live) return;
  var ms = parseInt(live.dataset.refresh, 10);
  if (!ms) return;
  function tick() {
    var u = new URL(window.location.href);
    u.searchParams.set("fragment", "1");
    u.searchParams.delete("flash");
    fetch(u, { headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        live.innerHTML = html;
        live.dataset.updated = String(Date.now());
        var st = live.querySelector("[data-state]");
        if (st && /SUCCEEDED|FAILED|CANCELLED/.test(st.dataset.state) && live.querySelector("#job")) return; // job ended
        setTimeout(tick, ms);
      })
      .catch(function () { setTimeout(tick, ms * 2); });
  }
  setTimeout(tick, ms);
})();
