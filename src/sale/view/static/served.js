// The served tasks of a `sale serve` state folder: one row per task key, polled every 2 s.
(function () {
  "use strict";
  var cfg = window.SALE_VIEW;
  var root = cfg.base + "/f/" + encodeURIComponent(cfg.fid);
  var state = {sort: "last_used", desc: true, offset: 0, limit: 100};
  var form = document.getElementById("filters");
  var body = document.querySelector("#tasks tbody");

  function money(x) {
    if (x === null || x === undefined) return null;
    if (x === 0) return "$0";
    if (Math.abs(x) >= 1) return "$" + x.toFixed(4);
    var digits = Math.min(12, Math.max(3, 2 - Math.floor(Math.log10(Math.abs(x)))));
    return "$" + x.toFixed(digits);
  }
  function time(ts) {
    if (ts === null || ts === undefined) return null;
    return new Date(ts * 1000).toISOString().slice(11, 23);
  }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (text === null || text === undefined || text === "") {
      var s = document.createElement("span");
      s.className = "absent";
      s.textContent = cls === "fallback" ? "" : "absent";
      td.appendChild(s);
    } else {
      td.textContent = text;
    }
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function render(data) {
    body.textContent = "";
    data.rows.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.dataset.key = r.key;
      var td = document.createElement("td");
      var a = document.createElement("a");
      a.href = root + "/task/" + encodeURIComponent(r.key);
      a.textContent = r.key;
      td.appendChild(a);
      tr.appendChild(td);
      cell(tr, r.winner, "winner");
      cell(tr, r.auction, "mono");
      cell(tr, r.fallback, "fallback");
      cell(tr, String(r.requests), "r");
      cell(tr, time(r.last_used));
      cell(tr, money(r.dollars), "r");
      cell(tr, Object.keys(r.phases).map(function (p) { return p + " " + money(r.phases[p]); }).join(" · "));
      var o = cell(tr, r.outcome);
      o.className = "o-" + r.outcome;
      body.appendChild(tr);
    });
    var end = Math.min(data.total, data.offset + data.rows.length);
    document.getElementById("count").textContent = data.total + " task(s)" + (data.total ? ", showing " + (data.offset + 1) + "-" + end : "");
    var t = data.totals;
    document.getElementById("totals").textContent = t.calls + " call(s) in the ledger · " + money(t.dollars) +
      (Object.keys(t.phases).length ? " (" + Object.keys(t.phases).map(function (p) { return p + " " + money(t.phases[p]); }).join(", ") + ")" : "");
    var ul = document.getElementById("problems");
    ul.textContent = "";
    data.problems.forEach(function (p) { var li = document.createElement("li"); li.className = "problem"; li.textContent = p; ul.appendChild(li); });
    document.querySelectorAll("#tasks th[data-sort]").forEach(function (th) {
      th.classList.toggle("sorted", th.dataset.sort === state.sort);
      th.classList.toggle("desc", th.dataset.sort === state.sort && state.desc);
    });
  }

  function load() {
    var p = new URLSearchParams();
    new FormData(form).forEach(function (v, k) { if (v !== "") p.set(k, v); });
    p.set("sort", state.sort);
    p.set("desc", state.desc ? "1" : "0");
    p.set("offset", state.offset);
    p.set("limit", state.limit);
    return fetch(root + "/api/tasks?" + p.toString()).then(function (r) { return r.json(); }).then(function (data) {
      render(data);
      document.getElementById("live").textContent = "live";
    }).catch(function () { document.getElementById("live").textContent = "not reachable"; });
  }

  document.querySelectorAll("#tasks th[data-sort]").forEach(function (th) {
    th.addEventListener("click", function () {
      if (state.sort === th.dataset.sort) state.desc = !state.desc; else { state.sort = th.dataset.sort; state.desc = false; }
      state.offset = 0;
      load();
    });
  });
  form.addEventListener("input", function () { state.offset = 0; load(); });
  document.getElementById("prev").addEventListener("click", function () { state.offset = Math.max(0, state.offset - state.limit); load(); });
  document.getElementById("next").addEventListener("click", function () { state.offset += state.limit; load(); });
  render(JSON.parse(document.getElementById("initial").textContent));
  setInterval(load, 2000);
})();
