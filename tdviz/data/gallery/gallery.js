(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("gallery-data").textContent);
  var cards = data.cards, models = data.models;
  var main = document.getElementById("cards");
  var body = document.body;
  var params = new URLSearchParams(window.location.search);
  var state = {view: "overlay", boxes: true, shown: {}, cls: "", correct: "", sort: "change"};
  models.forEach(function (m) { state.shown[m] = true; });

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function modelName(name) {  // a line may break after "_" or "@", never inside a word
    var th = el("th", "model");
    name.split(/(?<=[_@])/).forEach(function (part, i) {
      if (i) { th.appendChild(document.createElement("wbr")); }
      th.appendChild(document.createTextNode(part));
    });
    return th;
  }
  function pct(v) { return Math.round(100 * v) + "%"; }
  function src(card, name) { return card.cells + encodeURIComponent(name); }

  // one picture: the input or a step (overlay, map alone or input, as the view says) with its boxes
  function picture(card, row, step) {
    var pic = el("div", "pic");
    var img = el("img");
    img.alt = row.model + (step ? " step " + step : " input");
    img.decoding = "async";
    pic.appendChild(img);
    var w = row.size[0], h = row.size[1];
    function addBox(b, kind) {
      var d = el("div", "box " + kind);
      d.style.left = (100 * b[0] / w) + "%";
      d.style.top = (100 * b[1] / h) + "%";
      d.style.width = (100 * (b[2] - b[0] + 1) / w) + "%";
      d.style.height = (100 * (b[3] - b[1] + 1) / h) + "%";
      pic.appendChild(d);
    }
    (row.gt || []).forEach(function (b) { addBox(b, "gt"); });
    var s = step ? row.steps[step - 1] : null;
    if (s && s.box) { addBox(s.box, "pred"); }
    pic.update = function () {
      var name = row.input;
      if (s && state.view === "overlay") { name = s.overlay; }
      if (s && state.view === "map") { name = s.map; }
      var url = src(card, name);
      if (img.getAttribute("src") !== url) { img.setAttribute("src", url); }
    };
    pic.update();
    return pic;
  }
  function caption(row, step) {
    if (!step) { return "input"; }
    var s = row.steps[step - 1];
    return "step " + step + ": " + s.class + " " + pct(s.score) + (s.iou === null ? "" : " · IoU " + s.iou.toFixed(2));
  }
  var pictures = [];

  function buildCard(card, index) {
    var art = el("article", "card");
    art.tabIndex = 0;
    art.dataset.index = index;
    art.dataset.class = card.class;
    art.dataset.correct = card.correct ? "true" : "false";
    var head = el("div", "card-head");
    head.appendChild(el("span", "file", card.file));
    if (card.gt_known) { head.appendChild(el("span", "badge " + (card.correct ? "ok" : "bad"), card.correct ? "all correct" : "some wrong")); }
    head.appendChild(el("span", "", (card.gt_known ? "GT: " : "predicted: ") + card.class));
    head.appendChild(el("span", "muted", card.change === null ? "one step" : "largest change between steps " + card.change.toFixed(3)));
    var cmp = el("button", "compare-btn", "compare");
    cmp.type = "button";
    cmp.addEventListener("click", function () { openCompare(index); });
    head.appendChild(cmp);
    var png = el("a", "", "figure PNG"); png.href = card.png; head.appendChild(png);
    var pdf = el("a", "", "PDF"); pdf.href = card.pdf; head.appendChild(pdf);
    art.appendChild(head);
    var steps = Math.max.apply(null, card.rows.map(function (r) { return r.steps.length; }));
    var table = el("table", "steps");
    var tr = el("tr");
    ["model", "input"].forEach(function (t) { tr.appendChild(el("th", "", t)); });
    for (var t = 1; t <= steps; t++) { tr.appendChild(el("th", "", "step " + t)); }
    table.appendChild(tr);
    card.rows.forEach(function (row, r) {
      var line = el("tr");
      line.dataset.model = row.model;
      line.appendChild(modelName(row.model));
      for (var s = 0; s <= steps; s++) {
        var td = el("td", s === 0 ? "input-cell" : "");
        if (s === 0) { td.dataset.group = row.group; }
        if (s <= row.steps.length) {
          var btn = el("button", "cell");
          btn.type = "button";
          btn.dataset.row = r;
          btn.dataset.step = s;
          var pic = picture(card, row, s);
          pictures.push(pic);
          btn.appendChild(pic);
          btn.appendChild(el("span", "cap", caption(row, s)));
          btn.addEventListener("click", (function (rr, ss) { return function () { openZoom(index, rr, ss); }; })(r, s));
          td.appendChild(btn);
        }
        line.appendChild(td);
      }
      table.appendChild(line);
    });
    var wrap = el("div", "scroll");
    wrap.appendChild(table);
    art.appendChild(wrap);
    return art;
  }
  var arts = cards.map(buildCard);
  arts.forEach(function (a) { main.appendChild(a); });

  // ---- filters, sorting, view ----
  var boxes = Array.prototype.slice.call(document.querySelectorAll("input[name=model]"));
  var classSel = document.getElementById("f-class"), correctSel = document.getElementById("f-correct");
  var sortSel = document.getElementById("f-sort"), boxToggle = document.getElementById("f-boxes");
  var views = Array.prototype.slice.call(document.querySelectorAll("input[name=view]"));
  if (params.getAll("model").length) {
    var wanted = params.getAll("model");
    boxes.forEach(function (b) { b.checked = wanted.indexOf(b.value) >= 0; });
  }
  if (params.get("class") !== null) { classSel.value = params.get("class"); }
  if (params.get("correct") !== null) { correctSel.value = params.get("correct"); }
  if (params.get("sort") !== null) { sortSel.value = params.get("sort"); }
  if (params.get("view") !== null) { views.forEach(function (v) { v.checked = v.value === params.get("view"); }); }
  if (params.get("boxes") === "0") { boxToggle.checked = false; }

  function apply() {
    boxes.forEach(function (b) { state.shown[b.value] = b.checked; });
    views.forEach(function (v) { if (v.checked) { state.view = v.value; } });
    state.boxes = boxToggle.checked;
    body.classList.toggle("no-boxes", !state.boxes);
    pictures.forEach(function (p) { p.update(); });
    var shown = 0;
    arts.forEach(function (a, i) {
      var card = cards[i];
      var lastGroup = null;  // an input is shown once for the visible models that saw it alike
      Array.prototype.forEach.call(a.querySelectorAll("tr[data-model]"), function (tr) {
        tr.hidden = !state.shown[tr.dataset.model];
        var cell = tr.querySelector(".input-cell");
        if (!tr.hidden) {
          cell.classList.toggle("dup", cell.dataset.group === lastGroup);
          lastGroup = cell.dataset.group;
        }
      });
      var ok = (!classSel.value || card.class === classSel.value) &&
        (!correctSel.value || (correctSel.value === "correct") === card.correct) &&
        card.rows.some(function (r) { return state.shown[r.model]; });
      a.hidden = !ok;
      if (ok) { shown++; }
    });
    var order = arts.slice();
    if (sortSel.value === "name") {
      order.sort(function (a, b) { return cards[a.dataset.index].file.localeCompare(cards[b.dataset.index].file); });
    } else {
      order.sort(function (a, b) {
        var x = cards[a.dataset.index].change, y = cards[b.dataset.index].change;
        return (y === null ? -1 : y) - (x === null ? -1 : x);
      });
    }
    order.forEach(function (a) { main.appendChild(a); });
    var count = document.getElementById("count");
    count.textContent = shown + " of " + cards.length + " images";
    count.dataset.shown = shown;
    document.getElementById("none-shown").hidden = shown > 0;
  }
  boxes.concat([classSel, correctSel, sortSel, boxToggle]).concat(views).forEach(function (c) {
    c.addEventListener("change", apply);
  });

  // ---- enlarged view ----
  var zoom = document.getElementById("zoom"), zoomPic = document.getElementById("zoom-pic");
  var zoomCap = document.getElementById("zoom-cap"), zoomAt = null;
  function visibleRows(card) {
    var out = [];
    card.rows.forEach(function (r, i) { if (state.shown[r.model]) { out.push(i); } });
    return out.length ? out : [0];
  }
  function openZoom(index, row, step) {
    zoomAt = {index: index, row: row, step: step};
    var card = cards[index], r = card.rows[row];
    zoomPic.textContent = "";
    var pic = picture(card, r, step);
    zoomPic.appendChild(pic);
    zoomCap.textContent = card.file + " · " + r.model + " · " + caption(r, step);
    zoom.hidden = false;
    body.classList.add("dlg-open");
    zoom.dataset.step = step;
    zoom.dataset.model = r.model;
  }
  function closeAll() {
    zoom.hidden = true; compare.hidden = true; zoomAt = null; compareAt = null;
    body.classList.remove("dlg-open");
  }
  zoom.addEventListener("click", function (e) { if (e.target === zoom || e.target.id === "zoom-close") { closeAll(); } });

  // ---- compare view: two models or two steps side by side ----
  var compare = document.getElementById("compare"), compareAt = null;
  var selA = document.getElementById("cmp-a"), selB = document.getElementById("cmp-b");
  var stepA = document.getElementById("cmp-step-a"), stepB = document.getElementById("cmp-step-b");
  var slider = document.getElementById("cmp-slider");
  function fillSelect(sel, values, labels) {
    sel.textContent = "";
    values.forEach(function (v, i) { var o = el("option", "", labels[i]); o.value = v; sel.appendChild(o); });
  }
  function paneDraw(which) {
    var card = cards[compareAt];
    var row = Number((which === "a" ? selA : selB).value);
    var r = card.rows[row];
    var stepSel = which === "a" ? stepA : stepB;
    var step = Number(stepSel.value);
    var holder = document.getElementById("cmp-pic-" + which);
    holder.textContent = "";
    holder.appendChild(picture(card, r, step));
    var cap = document.getElementById("cmp-cap-" + which);
    cap.textContent = r.model + " · " + caption(r, step);
    holder.dataset.model = r.model;
    holder.dataset.step = step;
  }
  function setSteps(which, wanted) {  // a pane lists only its own model's steps; wanted is clamped to them
    var card = cards[compareAt], sel = which === "a" ? selA : selB, stepSel = which === "a" ? stepA : stepB;
    var n = card.rows[Number(sel.value)].steps.length, nums = [], labs = [];
    for (var s = 1; s <= n; s++) { nums.push(String(s)); labs.push("step " + s); }
    fillSelect(stepSel, nums, labs);
    stepSel.value = String(Math.max(1, Math.min(Number(wanted), n)));
  }
  function openCompare(index) {
    compareAt = index;
    var card = cards[index];
    var rows = card.rows.map(function (r, i) { return String(i); });
    fillSelect(selA, rows, card.rows.map(function (r) { return r.model; }));
    fillSelect(selB, rows, card.rows.map(function (r) { return r.model; }));
    var steps = Math.max.apply(null, card.rows.map(function (r) { return r.steps.length; }));
    var vis = visibleRows(card);
    var multi = card.rows.filter(function (r) { return r.steps.length > 1; });
    if (vis.length > 1) {  // two models, each at its last step
      selA.value = String(vis[0]); selB.value = String(vis[1]);
      setSteps("a", steps); setSteps("b", steps);
    } else {  // one model, its first and last steps
      var one = multi.length ? card.rows.indexOf(multi[0]) : vis[0];
      selA.value = selB.value = String(one);
      setSteps("a", 1); setSteps("b", steps);
    }
    slider.max = steps; slider.value = stepA.value;
    cmpView.value = state.view; cmpBoxes.checked = state.boxes;
    paneDraw("a"); paneDraw("b");
    compare.hidden = false;
    body.classList.add("dlg-open");
  }
  selA.addEventListener("change", function () { setSteps("a", stepA.value); slider.value = stepA.value; paneDraw("a"); });
  selB.addEventListener("change", function () { setSteps("b", stepB.value); paneDraw("b"); });
  stepA.addEventListener("change", function () { slider.value = stepA.value; paneDraw("a"); });
  stepB.addEventListener("change", function () { paneDraw("b"); });
  slider.addEventListener("input", function () {  // both panes to one step (a model with fewer stays at its last)
    setSteps("a", slider.value); setSteps("b", slider.value);
    paneDraw("a"); paneDraw("b");
  });
  document.getElementById("cmp-swap").addEventListener("click", function () {  // toggle A <-> B
    var a = [selA.value, stepA.value], b = [selB.value, stepB.value];
    selA.value = b[0]; selB.value = a[0];
    setSteps("a", b[1]); setSteps("b", a[1]);
    paneDraw("a"); paneDraw("b");
  });
  // overlay / map only / input and the boxes, from inside the view: the page's own controls follow
  var cmpView = document.getElementById("cmp-view"), cmpBoxes = document.getElementById("cmp-boxes");
  cmpView.addEventListener("change", function () {
    views.forEach(function (v) { v.checked = v.value === cmpView.value; });
    apply(); paneDraw("a"); paneDraw("b");
  });
  cmpBoxes.addEventListener("change", function () { boxToggle.checked = cmpBoxes.checked; apply(); });
  document.getElementById("cmp-close").addEventListener("click", closeAll);
  compare.addEventListener("click", function (e) { if (e.target === compare) { closeAll(); } });

  // ---- keyboard ----
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape") { closeAll(); return; }
    if (zoomAt !== null && !zoom.hidden) {
      var card = cards[zoomAt.index], rows = visibleRows(card), pos = rows.indexOf(zoomAt.row);
      var r = zoomAt.row, s = zoomAt.step;
      if (e.key === "ArrowRight") { s = Math.min(s + 1, card.rows[r].steps.length); }
      else if (e.key === "ArrowLeft") { s = Math.max(s - 1, 0); }
      else if (e.key === "ArrowDown") { r = rows[Math.min(pos + 1, rows.length - 1)]; }
      else if (e.key === "ArrowUp") { r = rows[Math.max(pos - 1, 0)]; }
      else { return; }
      e.preventDefault();
      openZoom(zoomAt.index, r, Math.min(s, card.rows[r].steps.length));
      return;
    }
    if (!compare.hidden) {
      if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
        slider.value = Math.max(1, Math.min(Number(slider.max), Number(slider.value) + (e.key === "ArrowRight" ? 1 : -1)));
        slider.dispatchEvent(new Event("input"));
        e.preventDefault();
      }
      return;
    }
    if (e.key === "j" || e.key === "k") {  // next / previous image
      var shown = Array.prototype.filter.call(main.children, function (a) { return !a.hidden; });
      var at = shown.indexOf(document.activeElement.closest ? document.activeElement.closest(".card") : null);
      var next = shown[Math.max(0, Math.min(shown.length - 1, at + (e.key === "j" ? 1 : -1)))];
      if (next) { next.focus(); next.scrollIntoView({block: "nearest"}); }
    }
  });

  apply();
  if (params.get("compare") !== null && cards[Number(params.get("compare"))]) {
    openCompare(Number(params.get("compare")));
    if (params.get("step") !== null) { slider.value = params.get("step"); slider.dispatchEvent(new Event("input")); }
  }
  if (params.get("zoom") !== null) {
    var z = params.get("zoom").split(",").map(Number);
    if (cards[z[0]] && cards[z[0]].rows[z[1]]) { openZoom(z[0], z[1], Math.min(z[2] || 0, cards[z[0]].rows[z[1]].steps.length)); }
  }

  // report when every picture on the page settled: data-ready / data-loaded / data-failed on <body>
  function settle() {
    var imgs = Array.prototype.slice.call(main.querySelectorAll("img"));
    var pending = imgs.filter(function (i) { return !i.complete; });
    if (pending.length) { setTimeout(settle, 50); return; }
    body.dataset.loaded = imgs.filter(function (i) { return i.naturalWidth > 0; }).length;
    body.dataset.failed = imgs.filter(function (i) { return i.naturalWidth === 0; }).length;
    body.dataset.ready = "1";
  }
  settle();
})();
