"""An offline HTML gallery of figures that already exist as files, and a PNG contact sheet.

``write_gallery_page`` writes one self-contained ``index.html`` (inline CSS and JS; no CDN, fonts or
scripts from outside) next to the figures: a grid of thumbnails with filters (model, class,
correct/wrong), sorting (largest change between steps, name), a lightbox, PDF links and an
"N of M shown" count. The URL query pre-sets the controls, e.g. ``index.html?model=A&model=B``,
``?class=goldfinch``, ``?correct=wrong``, ``?sort=name``.

Every label is HTML-escaped; the item data is embedded as JSON in a
``<script type="application/json">`` block with ``<``, ``>`` and ``&`` written as ``\\u003c`` etc.
(so no ``</script>`` or ``<!--`` can occur in it), and the page's JS puts labels into the DOM only
through ``textContent``. When all thumbnails have settled the JS writes ``data-ready="1"``,
``data-loaded`` (images with a non-zero natural width) and ``data-failed`` on ``<body>``.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import quote

_CSS = """
:root { --bg: #f4f5f7; --card: #fff; --ink: #1d2330; --muted: #5f6b7a; --line: #d9dee5;
        --ok: #1f7a3f; --ok-bg: #e3f4e8; --bad: #a32020; --bad-bg: #fbe6e6; --accent: #2456a6; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { position: sticky; top: 0; z-index: 2; background: var(--card); border-bottom: 1px solid var(--line);
         padding: 10px 18px; box-shadow: 0 1px 4px rgba(0,0,0,.06); }
h1 { font-size: 18px; margin: 0 0 8px; }
.controls { display: flex; flex-wrap: wrap; gap: 8px 20px; align-items: center; }
.controls fieldset { border: 0; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 10px; align-items: center; }
.controls .lbl { font-weight: 600; color: var(--muted); margin-right: 4px; }
.controls label { cursor: pointer; white-space: nowrap; }
.controls select { font: inherit; padding: 2px 4px; max-width: 260px; }
#count { margin-left: auto; font-weight: 600; color: var(--accent); }
#status { color: var(--bad); font-weight: 600; }
main { padding: 16px 18px 40px; }
#grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 14px; }
.card { display: flex; flex-direction: column; background: var(--card); border: 1px solid var(--line);
        border-radius: 8px; overflow: hidden; box-shadow: 0 1px 3px rgba(0,0,0,.05); }
.card[hidden] { display: none; }
.thumb { display: flex; align-items: center; justify-content: center; height: 190px; background: #fafbfc;
         border-bottom: 1px solid var(--line); cursor: zoom-in; }
.thumb img { max-width: 100%; max-height: 100%; object-fit: contain; display: block; }
.thumb:focus-visible { outline: 3px solid var(--accent); outline-offset: -3px; }
.meta { padding: 8px 10px 10px; display: flex; flex-direction: column; gap: 4px; }
.row { display: flex; gap: 6px; align-items: baseline; flex-wrap: wrap; }
.badge { font-size: 11px; font-weight: 700; padding: 1px 6px; border-radius: 9px; text-transform: uppercase; }
.badge.ok { color: var(--ok); background: var(--ok-bg); }
.badge.bad { color: var(--bad); background: var(--bad-bg); }
.cls { font-weight: 600; overflow-wrap: anywhere; }
.models { color: var(--muted); font-size: 12px; overflow-wrap: anywhere; }
.caption { margin: 0; font-size: 12.5px; overflow-wrap: anywhere; }
.foot { display: flex; justify-content: space-between; font-size: 12px; color: var(--muted); margin-top: 2px; }
a { color: var(--accent); }
.empty { color: var(--muted); }
#none-shown { color: var(--muted); margin: 24px 0; }
#lightbox { position: fixed; inset: 0; z-index: 10; background: rgba(12,15,20,.88); display: flex;
            flex-direction: column; align-items: center; justify-content: center; gap: 10px; padding: 20px; cursor: zoom-out; }
#lightbox[hidden] { display: none; }
#lightbox img { max-width: 94vw; max-height: 80vh; object-fit: contain; background: #fff; border-radius: 4px; }
#lightbox .lb-text { color: #eef1f5; max-width: 90vw; text-align: center; }
#lightbox .lb-text a { color: #9cc3ff; }
#lightbox .lb-hint { color: #9aa4b2; font-size: 12px; }
body.lb-open { overflow: hidden; }
"""

_JS = r"""
(function () {
  "use strict";
  var items = JSON.parse(document.getElementById("gallery-data").textContent);
  var grid = document.getElementById("grid");
  var cards = Array.prototype.slice.call(grid.querySelectorAll(".card"));
  var modelBoxes = Array.prototype.slice.call(document.querySelectorAll("input[name=model]"));
  var classSel = document.getElementById("f-class");
  var correctSel = document.getElementById("f-correct");
  var sortSel = document.getElementById("f-sort");
  var count = document.getElementById("count");
  var itemOf = function (card) { return items[Number(card.dataset.index)]; };

  function preset(sel, value) {
    if (value === null) return;
    for (var i = 0; i < sel.options.length; i++) {
      if (sel.options[i].value === value) { sel.value = value; return; }
    }
  }
  var params = new URLSearchParams(window.location.search);
  var wanted = params.getAll("model");
  if (wanted.length) modelBoxes.forEach(function (b) { b.checked = wanted.indexOf(b.value) >= 0; });
  preset(classSel, params.get("class"));
  preset(correctSel, params.get("correct"));
  preset(sortSel, params.get("sort"));

  function applyFilters() {
    var models = modelBoxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; });
    var cls = classSel.value, corr = correctSel.value, shown = 0;
    cards.forEach(function (card) {
      var it = itemOf(card);
      var ok = it.models.some(function (m) { return models.indexOf(m) >= 0; }) &&
               (cls === "" || it["class"] === cls) &&
               (corr === "" || (corr === "correct") === it.correct);
      card.hidden = !ok;
      if (ok) shown++;
    });
    count.textContent = shown + " of " + cards.length + " shown";
    count.dataset.shown = String(shown);
    document.getElementById("none-shown").hidden = shown > 0 || !cards.length;
  }

  function byName(x, y) { return x.name < y.name ? -1 : x.name > y.name ? 1 : x.index - y.index; }
  function applySort() {
    var key = sortSel.value;
    cards.slice().sort(function (a, b) {
      var x = itemOf(a), y = itemOf(b);
      if (key === "change") {
        var cx = x.change === null ? -Infinity : x.change, cy = y.change === null ? -Infinity : y.change;
        if (cx !== cy) return cx < cy ? 1 : -1;
      }
      return byName(x, y);
    }).forEach(function (card) { grid.appendChild(card); });
  }

  modelBoxes.forEach(function (b) { b.addEventListener("change", applyFilters); });
  classSel.addEventListener("change", applyFilters);
  correctSel.addEventListener("change", applyFilters);
  sortSel.addEventListener("change", applySort);

  // Lightbox: click a thumbnail to enlarge; Esc or a click closes; arrow keys step through shown cards.
  var lb = document.getElementById("lightbox");
  var lbImg = document.getElementById("lb-img");
  var lbCaption = document.getElementById("lb-caption");
  var lbPdf = document.getElementById("lb-pdf");
  var current = null;
  function openCard(card) {
    var it = itemOf(card);
    current = card;
    lbImg.src = it.image_url;
    lbImg.alt = it.caption;
    lbCaption.textContent = it["class"] + " \u00b7 " + it.models.join(", ") + (it.caption ? " \u00b7 " + it.caption : "");
    lbPdf.hidden = !it.pdf_url;
    if (it.pdf_url) lbPdf.href = it.pdf_url;
    lb.hidden = false;
    document.body.classList.add("lb-open");
  }
  function closeBox() {
    if (lb.hidden) return;
    lb.hidden = true;
    document.body.classList.remove("lb-open");
    if (current) current.querySelector(".thumb").focus();
  }
  function step(delta) {
    var shown = Array.prototype.filter.call(grid.children, function (c) { return !c.hidden; });
    var i = shown.indexOf(current);
    if (i >= 0 && shown.length) openCard(shown[(i + delta + shown.length) % shown.length]);
  }
  cards.forEach(function (card) {
    card.querySelector(".thumb").addEventListener("click", function (e) {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      openCard(card);
    });
  });
  lb.addEventListener("click", function (e) { if (e.target !== lbPdf) closeBox(); });
  document.addEventListener("keydown", function (e) {
    if (lb.hidden) return;
    if (e.key === "Escape") closeBox();
    else if (e.key === "ArrowRight") step(1);
    else if (e.key === "ArrowLeft") step(-1);
  });

  // Report when every thumbnail has loaded (or failed): data-ready / data-loaded / data-failed on <body>.
  var imgs = cards.map(function (c) { return c.querySelector(".thumb img"); });
  var pending = imgs.length;
  function report() {
    var ok = imgs.filter(function (im) { return im.naturalWidth > 0; }).length;
    document.body.dataset.loaded = String(ok);
    document.body.dataset.failed = String(imgs.length - ok);
    if (ok < imgs.length) document.getElementById("status").textContent = (imgs.length - ok) + " figure(s) failed to load";
    document.body.dataset.ready = "1";
  }
  function settled() { if (--pending === 0) report(); }
  imgs.forEach(function (im) {
    if (im.complete) settled();
    else { im.addEventListener("load", settled); im.addEventListener("error", settled); }
  });
  if (!imgs.length) report();

  applySort();
  applyFilters();
})();
"""


def _rel_path(out_dir: Path, rel: str, what: str) -> str:
    """Check that ``rel`` is a relative path to an existing file under ``out_dir``; return it as a URL."""
    p = PurePosixPath(str(rel).replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"{what} must be a relative path inside {out_dir}, got {rel!r}")
    if not (out_dir / p).is_file():
        raise FileNotFoundError(f"{what} {rel!r} does not exist under {out_dir}")
    return quote(str(p))


def _script_json(data) -> str:
    """JSON that is inert inside a <script> element: ASCII only, and no '<', '>' or '&' at all."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _normalize(out_dir: Path, item: dict, index: int) -> dict:
    models = [str(m) for m in (item.get("models") or [item["model"]])]
    change = item.get("change")
    change = float(change) if change is not None and math.isfinite(float(change)) else None
    image = str(item["image"])
    pdf = item.get("pdf")
    return {
        "index": index,
        "name": str(item.get("name") or image),
        "model": str(item.get("model") or ", ".join(models)),
        "models": models,
        "class": str(item.get("class", "")),
        "correct": bool(item.get("correct", False)),
        "change": change,
        "caption": str(item.get("caption", "")),
        "image_url": _rel_path(out_dir, image, "image"),
        "pdf_url": _rel_path(out_dir, str(pdf), "pdf") if pdf else None,
    }


def _card(it: dict) -> str:
    e = html.escape
    ok = it["correct"]
    change = "Δ –" if it["change"] is None else f"Δ {it['change']:.3f}"
    pdf = f'<a href="{e(it["pdf_url"])}">PDF</a>' if it["pdf_url"] else ""
    return (
        f'<article class="card" data-index="{it["index"]}" data-model="{e(it["model"])}" '
        f'data-models="{e(json.dumps(it["models"]))}" data-class="{e(it["class"])}" '
        f'data-correct="{"true" if ok else "false"}" data-change="{"" if it["change"] is None else it["change"]}">'
        f'<a class="thumb" href="{e(it["image_url"])}" title="{e(it["name"])}">'
        f'<img src="{e(it["image_url"])}" alt="{e(it["caption"] or it["name"])}"></a>'
        f'<div class="meta"><div class="row"><span class="badge {"ok" if ok else "bad"}">'
        f'{"correct" if ok else "wrong"}</span><span class="cls">{e(it["class"])}</span></div>'
        f'<div class="models">{e(", ".join(it["models"]))}</div>'
        f'<p class="caption">{e(it["caption"])}</p>'
        f'<div class="foot"><span title="largest change between steps">{change}</span>{pdf}</div></div></article>'
    )


def write_gallery_page(out_dir: Path, items: list[dict], title: str) -> Path:
    """Write ``out_dir/index.html``: an offline gallery of the figures listed in ``items``.

    Each item: ``image`` (path relative to ``out_dir``, must exist), optional ``pdf`` (same),
    ``model`` (str), optional ``models`` (list, when a figure shows several models; the model
    filter shows an item if any of them is selected), ``class``, ``correct`` (bool), ``change``
    (float, largest change between steps; sorts descending; None/NaN sorts last), ``caption``, and
    optional ``name`` (sort key; default the image path). Returns the page's path.
    """
    out_dir = Path(out_dir)
    norm = [_normalize(out_dir, item, i) for i, item in enumerate(items)]
    e = html.escape
    models = list(dict.fromkeys(m for it in norm for m in it["models"]))
    classes = sorted({it["class"] for it in norm})
    model_boxes = "".join(f'<label><input type="checkbox" name="model" value="{e(m)}" checked> {e(m)}</label>'
                          for m in models)
    class_opts = "".join(f'<option value="{e(c)}">{e(c)}</option>' for c in classes)
    cards = "".join(_card(it) for it in norm) or '<p class="empty">No figures.</p>'
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>{e(title)}</h1>
<div class="controls">
<fieldset id="f-models"><span class="lbl">Model</span>{model_boxes}</fieldset>
<label><span class="lbl">Class</span> <select id="f-class"><option value="">all classes</option>{class_opts}</select></label>
<label><span class="lbl">Prediction</span> <select id="f-correct"><option value="">all</option>
<option value="correct">correct</option><option value="wrong">wrong</option></select></label>
<label><span class="lbl">Sort</span> <select id="f-sort"><option value="change">largest change between steps</option>
<option value="name">name</option></select></label>
<span id="status"></span>
<span id="count" data-shown="{len(norm)}">{len(norm)} of {len(norm)} shown</span>
</div>
</header>
<main><div id="grid">{cards}</div><p id="none-shown" hidden>No figure matches the filters.</p></main>
<div id="lightbox" hidden><img id="lb-img" alt=""><div class="lb-text"><span id="lb-caption"></span>
<a id="lb-pdf" href="#" hidden>open PDF</a></div><div class="lb-hint">Esc or click to close · ← → next</div></div>
<script type="application/json" id="gallery-data">{_script_json(norm)}</script>
<script>{_JS}</script>
</body>
</html>
"""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def contact_sheet(image_paths: Sequence[str | Path], out_path: str | Path, columns: int = 6,
                  thumb_width: int = 320, pad: int = 8) -> Path:
    """Tile figure images into one PNG, ``columns`` per row, in the given order.

    Each figure is shrunk (aspect kept, never enlarged) to at most ``thumb_width`` pixels wide
    (and 3x that high) and centred in its cell; a row is as tall as its tallest thumbnail; white
    background, ``pad`` pixels between cells. Returns ``out_path``.
    """
    from PIL import Image

    if not image_paths:
        raise ValueError("contact_sheet needs at least one image")
    columns = max(1, min(columns, len(image_paths)))
    thumbs = []
    for p in image_paths:
        with Image.open(p) as im:
            im = im.convert("RGBA")
        im.thumbnail((thumb_width, 3 * thumb_width), Image.LANCZOS)
        flat = Image.new("RGB", im.size, "white")
        flat.paste(im, mask=im.getchannel("A"))
        thumbs.append(flat)
    rows = [thumbs[i:i + columns] for i in range(0, len(thumbs), columns)]
    heights = [max(t.height for t in row) for row in rows]
    sheet = Image.new("RGB", (pad + columns * (thumb_width + pad), pad + sum(h + pad for h in heights)), "white")
    y = pad
    for row, h in zip(rows, heights):
        for c, t in enumerate(row):
            sheet.paste(t, (pad + c * (thumb_width + pad) + (thumb_width - t.width) // 2, y + (h - t.height) // 2))
        y += h + pad
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
