"""The offline gallery page (``index.html``) and a PNG contact sheet.

:func:`write_gallery_page` writes one self-contained page (CSS and JS inlined from
``tdviz/data/gallery/``; nothing from outside): one card per image holding a model x step grid
(the input, then each step's map with its class, score and box IoU), whose rows the model filter
shows or hides; filters by class and by correct/wrong, sorting by the largest change between
steps or by name; a view switch (overlay, map alone, input) and a boxes toggle (GT green,
predicted orange); an enlarged view (click a cell; arrows move between steps and models, Esc
closes); and a compare view (two models, or two steps of one model, side by side, with a step
slider and an A/B swap). ``j`` / ``k`` move between images. The URL presets it:
``?model=A&model=B``, ``?class=...``, ``?correct=wrong``, ``?sort=name``, ``?view=map``,
``?boxes=0``, ``?compare=<card>&step=<t>``, ``?zoom=<card>,<row>,<step>``.

Labels reach the DOM only through ``textContent``; the data is embedded as JSON with ``<``, ``>``
and ``&`` escaped (no ``</script>`` can occur in it). When every picture has settled the page
writes ``data-ready``, ``data-loaded`` and ``data-failed`` on ``<body>``.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

ASSETS = Path(__file__).resolve().parent / "data" / "gallery"

__all__ = ["contact_sheet", "write_gallery_page"]


def _script_json(data) -> str:
    """JSON that is inert inside a <script> element: ASCII only, and no '<', '>' or '&' at all."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _inside(out_dir: Path, rel: str, what: str) -> str:
    p = PurePosixPath(str(rel).replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"{what} must be a relative path inside {out_dir}, got {rel!r}")
    return str(p)


def _card(out_dir: Path, card: dict) -> dict:
    """A card as the page reads it: every path checked to stay inside ``out_dir``, numbers finite."""
    change = card.get("change")
    change = float(change) if change is not None and math.isfinite(float(change)) else None
    cells = _inside(out_dir, card["cells"], "cells").rstrip("/") + "/"
    rows = []
    for row in card["rows"]:
        for name in [row["input"]] + [s[k] for s in row["steps"] for k in ("overlay", "map")]:
            if not (out_dir / cells / name).is_file():
                raise FileNotFoundError(f"gallery cell {cells}{name} does not exist under {out_dir}")
        rows.append({"model": str(row["model"]), "group": int(row.get("group", len(rows))), "input": str(row["input"]),
                     "size": [int(v) for v in row["size"]],
                     "gt": row.get("gt"),
                     "steps": [{"overlay": str(s["overlay"]), "map": str(s["map"]), "class": str(s["class"]),
                                "score": float(s["score"]), "box": s.get("box"),
                                "iou": None if s.get("iou") is None else float(s["iou"])} for s in row["steps"]]})
    return {"file": str(card["file"]), "class": str(card.get("class", "")), "gt_known": bool(card.get("gt_known")),
            "correct": bool(card.get("correct")), "change": change, "cells": cells,
            "png": _inside(out_dir, card["png"], "png"), "pdf": _inside(out_dir, card["pdf"], "pdf"), "rows": rows}


def write_gallery_page(out_dir: Path, cards: list[dict], models: Sequence[str], title: str,
                       method: str = "gradcam") -> Path:
    """Write ``out_dir/index.html`` for ``cards`` (what :func:`tdviz.gallery.build_gallery` makes:
    per image its file name, class, correct, change, figure files, cell folder and one row per
    model with its input and per-step images, classes, scores, boxes and IoUs). Returns its path."""
    out_dir = Path(out_dir)
    data = {"cards": [_card(out_dir, c) for c in cards], "models": [str(m) for m in models]}
    e = html.escape
    classes = sorted({c["class"] for c in data["cards"]})
    model_boxes = "".join(f'<label><input type="checkbox" name="model" value="{e(m)}" checked> {e(m)}</label>'
                          for m in data["models"])
    class_opts = "".join(f'<option value="{e(c)}">{e(c)}</option>' for c in classes)
    n = len(data["cards"])
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{(ASSETS / "gallery.css").read_text(encoding="utf-8")}</style>
</head>
<body>
<header>
<h1>{e(title)} <span class="muted">({e(method)}, top-1 class per step)</span></h1>
<div class="controls">
<fieldset><span class="lbl">Models</span>{model_boxes}</fieldset>
<label><span class="lbl">Class</span> <select id="f-class"><option value="">all</option>{class_opts}</select></label>
<label><span class="lbl">Prediction</span> <select id="f-correct"><option value="">all</option>
<option value="correct">all correct</option><option value="wrong">some wrong</option></select></label>
<label><span class="lbl">Sort</span> <select id="f-sort"><option value="change">largest change between steps</option>
<option value="name">name</option></select></label>
<fieldset><span class="lbl">Show</span><label><input type="radio" name="view" value="overlay" checked> overlay</label>
<label><input type="radio" name="view" value="map"> map only</label>
<label><input type="radio" name="view" value="input"> input</label>
<label><input type="checkbox" id="f-boxes" checked> boxes</label></fieldset>
<span class="legend"><span class="g"><i></i>ground truth</span><span class="p"><i></i>predicted (CAM box)</span></span>
<span id="count" data-shown="{n}">{n} of {n} images</span>
</div>
</header>
<main id="cards"></main>
<p id="none-shown" hidden>No image matches the filters.</p>
<div id="zoom" class="overlay-dlg" hidden role="dialog" aria-label="enlarged view"><div id="zoom-pic"></div>
<span id="zoom-cap" class="cap"></span><button type="button" id="zoom-close">close</button>
<span class="hint">← → steps · ↑ ↓ models · Esc closes</span></div>
<div id="compare" class="overlay-dlg" hidden role="dialog" aria-label="compare view">
<div class="bar"><label>A <select id="cmp-a"></select></label><select id="cmp-step-a"></select>
<button type="button" id="cmp-swap">swap A ⇄ B</button>
<label>B <select id="cmp-b"></select></label><select id="cmp-step-b"></select>
<label>step <input type="range" id="cmp-slider" min="1" max="1" value="1"></label>
<label>show <select id="cmp-view"><option value="overlay">overlay</option><option value="map">map only</option>
<option value="input">input</option></select></label><label><input type="checkbox" id="cmp-boxes" checked> boxes</label>
<button type="button" id="cmp-close">close</button></div>
<div class="panes"><div class="pane"><div id="cmp-pic-a"></div><span id="cmp-cap-a" class="cap"></span></div>
<div class="pane"><div id="cmp-pic-b"></div><span id="cmp-cap-b" class="cap"></span></div></div>
<span class="hint">the slider (or ← →) moves both sides to one step · Esc closes</span></div>
<script type="application/json" id="gallery-data">{_script_json(data)}</script>
<script>{(ASSETS / "gallery.js").read_text(encoding="utf-8")}</script>
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
