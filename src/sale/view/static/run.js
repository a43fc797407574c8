// The run page's task table: sorted, filtered and paged by the server (/api/tasks),
// refreshed while the run is going (the page polls /api/state every 2 s).
(function () {
  "use strict";
  var cfg = window.SALE_VIEW;
  var root = cfg.base + "/f/" + encodeURIComponent(cfg.fid);
  var initial = JSON.parse(document.getElementById("initial").textContent);
  var state = {sort: "n", desc: false, offset: 0, limit: 100};
  var last = initial.state;
  var form = document.getElementById("filters");
  var body = document.querySelector("#tasks tbody");

  function money(x) {
    if (x === null || x === undefined) return null;
    if (x === 0) return "$0";
    if (Math.abs(x) >= 1) return "$" + x.toFixed(4);
    var digits = Math.min(12, Math.max(3, 2 - Math.floor(Math.log10(Math.abs(x)))));
    return "$" + x.toFixed(digits);
  }
  function num(x, d) {
    if (x === null || x === undefined) return null;
    return d === undefined ? x.toLocaleString("en") : x.toFixed(d);
  }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (text === null || text === undefined || text === "") {
      var s = document.createElement("span");
      s.className = "absent";
      s.textContent = "absent";
      td.appendChild(s);
    } else {
      td.textContent = text;
    }
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function params() {
    var p = new URLSearchParams();
    new FormData(form).forEach(function (v, k) { if (v !== "") p.set(k, v); });
    p.set("sort", state.sort);
    p.set("desc", state.desc ? "1" : "0");
    p.set("offset", state.offset);
    p.set("limit", state.limit);
    return p;
  }

  function fillFacets(facets) {
    Object.keys(facets).forEach(function (name) {
      var sel = form.elements[name];
      if (!sel) return;
      var keep = sel.value;
      var have = {};
      Array.prototype.forEach.call(sel.options, function (o) { have[o.value] = true; });
      facets[name].forEach(function (v) {
        if (have[v]) return;
        var o = document.createElement("option");
        o.value = v;
        o.textContent = v;
        sel.appendChild(o);
      });
      sel.value = keep;
    });
  }

  function render(page) {
    body.textContent = "";
    page.rows.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.className = "o-" + r.outcome;
      cell(tr, String(r.n), "r");
      var td = document.createElement("td");
      var a = document.createElement("a");
      a.href = root + "/task/" + encodeURIComponent(r.task_id);
      a.textContent = r.task_id;
      td.appendChild(a);
      tr.appendChild(td);
      cell(tr, r.tier_name || (r.tier === null ? null : String(r.tier)));
      cell(tr, r.domain);
      cell(tr, r.winner ? r.winner + (r.winner_kind === "refined" ? " (refined)" : "") : null);
      cell(tr, r.outcome, "outcome");
      cell(tr, money(r.dollars), "r");
      cell(tr, num(r.tokens), "r");
      cell(tr, num(r.wall_s, 2), "r");
      var why = cell(tr, r.error ? "error: " + r.error : r.reason, "reason");
      why.title = r.error || r.reason || "";
      body.appendChild(tr);
    });
    var shown = page.rows.length;
    document.getElementById("count").textContent = page.total === 0
      ? "no task matches (" + page.all + " in the run)"
      : "tasks " + (page.offset + 1) + "-" + (page.offset + shown) + " of " + page.total +
        (page.total !== page.all ? " matching (" + page.all + " in the run)" : "");
    document.getElementById("prev").disabled = page.offset === 0;
    document.getElementById("next").disabled = page.offset + shown >= page.total;
    document.querySelectorAll("#tasks th[data-sort]").forEach(function (th) {
      th.classList.toggle("sorted", th.dataset.sort === state.sort);
      th.classList.toggle("desc", th.dataset.sort === state.sort && state.desc);
    });
    document.getElementById("tasks").dataset.total = page.total;
  }

  var seq = 0;
  function load() {
    var mine = ++seq;
    return fetch(root + "/api/tasks?" + params().toString()).then(function (r) { return r.json(); })
      .then(function (page) {
        if (mine !== seq) return;
        fillFacets(page.facets);
        render(page);
      });
  }

  function showPending(st) {
    var box = document.getElementById("pending-box");
    var ul = document.getElementById("pending");
    ul.textContent = "";
    (st.pending || []).forEach(function (p) {
      var li = document.createElement("li");
      if (p.task_id) {
        var a = document.createElement("a");
        a.href = root + "/task/" + encodeURIComponent(p.task_id);
        a.textContent = p.task_id;
        li.appendChild(a);
        li.appendChild(document.createTextNode(p.winner ? " (auction won by " + p.winner + ")" : ""));
      } else {
        li.textContent = p.file + (p.problem ? ": " + p.problem : "");
      }
      ul.appendChild(li);
    });
    box.hidden = !(st.pending && st.pending.length);
  }

  function poll() {
    fetch(root + "/api/state").then(function (r) { return r.json(); }).then(function (st) {
      var live = document.getElementById("live");
      live.textContent = "updated " + new Date().toLocaleTimeString("en-GB");
      showPending(st);
      if (st.results_bytes !== last.results_bytes || st.summary_mtime !== last.summary_mtime ||
          st.tasks !== last.tasks) {
        last = st;
        load();
        fetch(root + "/summary").then(function (r) { return r.text(); }).then(function (html) {
          var box = document.getElementById("summary");
          var tmp = document.createElement("div");
          tmp.innerHTML = html;
          if (tmp.firstElementChild) box.replaceWith(tmp.firstElementChild);
        });
      }
    }).catch(function () {
      document.getElementById("live").textContent = "the viewer is not answering";
    }).then(function () { setTimeout(poll, 2000); });
  }

  form.addEventListener("input", function () { state.offset = 0; load(); });
  form.addEventListener("change", function () { state.offset = 0; load(); });
  document.querySelectorAll("#tasks th[data-sort]").forEach(function (th) {
    th.addEventListener("click", function () {
      var key = th.dataset.sort;
      state.desc = state.sort === key ? !state.desc : (key === "dollars" || key === "tokens" || key === "wall_s");
      state.sort = key;
      state.offset = 0;
      load();
    });
  });
  document.getElementById("prev").addEventListener("click", function () {
    state.offset = Math.max(0, state.offset - state.limit); load();
  });
  document.getElementById("next").addEventListener("click", function () {
    state.offset += state.limit; load();
  });

  fillFacets(initial.facets);
  render(initial.page);
  showPending(initial.state);
  setTimeout(poll, 2000);
})();
