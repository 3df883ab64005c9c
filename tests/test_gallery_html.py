"""The offline gallery page, checked in real headless Chromium (Debian: apt-get install -y chromium).

Chromium runs with ``--dump-dom`` (the DOM after the page's JS ran, under a virtual time budget)
and ``--enable-logging=stderr --v=0``, which prints every console message and uncaught exception
of the page to stderr as ``...:INFO:CONSOLE...] "message", source: ...``. The page's own JS never
logs, so ANY such line is a failure; a canary page proves the detection itself works.
"""

import json
import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image

from tdviz.gallery_html import contact_sheet, write_gallery_page

CHROMIUM = "/usr/bin/chromium"
CONSOLE_LINE = re.compile(r"CONSOLE[(:]|Uncaught")

MODEL_A = "resnet50"
MODEL_B = "td_top & co <img src=x onerror=document.documentElement.setAttribute('data-pwned','img')>"
EVIL_CLASS = "<script>alert(1)</script> & friends"
BREAKOUT = "</script><script>document.documentElement.dataset.pwned='json'</script><!-- x"
TITLE = "Steps <b>&</b> CAMs"


def chromium(url: str, profile: Path, budget_ms: int = 3000) -> tuple[str, list[str]]:
    """Dump the DOM of ``url`` after its JS ran; return it with the console lines from stderr."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: the gallery test needs real headless Chromium; "
                    "install it with `apt-get install -y chromium`")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}",
           "--enable-logging=stderr", "--v=0", f"--virtual-time-budget={budget_ms}", "--dump-dom", url]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=25)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if CONSOLE_LINE.search(line)]


class Dom(HTMLParser):
    """The bits of a dumped gallery DOM the tests look at."""

    def __init__(self, text: str):
        super().__init__()
        self.cards, self.html_attrs, self.body_attrs, self.count, self.imgs = [], {}, {}, "", 0
        self.dialogs = {}
        self._in_count = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.html_attrs = a
        elif tag == "body":
            self.body_attrs = a
        elif tag == "article" and "card" in a.get("class", ""):
            self.cards.append(a)
            a["rows"] = []
        elif tag == "tr" and "data-model" in a and self.cards:
            self.cards[-1]["rows"].append(a)
        elif tag == "img" and self.cards:
            self.imgs += 1
        elif a.get("id") in ("cmp-pic-a", "cmp-pic-b", "zoom", "compare"):
            self.dialogs[a["id"]] = a
        self._in_count = a.get("id") == "count"

    def handle_data(self, data):
        if self._in_count:
            self.count += data
            self._in_count = False

    def shown(self) -> list[int]:
        return [int(c["data-index"]) for c in self.cards if "hidden" not in c]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """A page of six hostile cards: labels that try to break out of HTML and JSON, a space in a
    folder name, two models of which one has two steps."""
    out = tmp_path_factory.mktemp("gallery")
    specs = [("goldfinch", True, 0.10, "a.png"), (EVIL_CLASS, False, 0.50, "b.png"), ("water ouzel", True, 0.05, "c.png"),
             ("goldfinch", False, 0.90, BREAKOUT), (EVIL_CLASS, True, 0.30, "e.png"), ("water ouzel", True, 0.70, "f.png")]
    cards = []
    for i, (cls, ok, change, name) in enumerate(specs):
        cells = f"cells/img {i}/"
        (out / cells).mkdir(parents=True)
        rows = []
        for m, steps in ((MODEL_A, 1), (MODEL_B, 2)):
            slug = "a" if m == MODEL_A else "b"
            Image.new("RGB", (64, 48), (40 * i, 120, 255)).save(out / cells / f"{slug}_input.jpg")
            st = []
            for t in range(1, steps + 1):
                for kind in ("", "_map"):
                    Image.new("RGB", (64, 48), (40 * i, 60 * t, 30)).save(out / cells / f"{slug}_s{t}{kind}.jpg")
                st.append({"overlay": f"{slug}_s{t}.jpg", "map": f"{slug}_s{t}_map.jpg", "class": cls, "score": 0.5,
                           "box": [4, 4, 30, 20], "iou": 0.25 * t})
            rows.append({"model": m, "group": 0, "input": f"{slug}_input.jpg", "size": [64, 48],
                         "gt": [[2, 2, 40, 30]], "steps": st})
        (out / "figures").mkdir(exist_ok=True)
        Image.new("RGB", (120 + 20 * i, 80), (40 * i, 120, 255 - 40 * i)).save(out / "figures" / f"fig {i}.png")
        (out / "figures" / f"fig {i}.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
        cards.append({"file": name, "class": cls, "gt_known": True, "correct": ok, "change": change, "cells": cells,
                      "png": f"figures/fig {i}.png", "pdf": f"figures/fig {i}.pdf", "rows": rows})
    return write_gallery_page(out, cards, [MODEL_A, MODEL_B], TITLE), cards


def test_chromium_console_capture_works(tmp_path):
    canary = tmp_path / "canary.html"
    canary.write_text('<!DOCTYPE html><body><script>console.error("canary-err"); undefinedFn();</script></body>')
    _, console = chromium(canary.as_uri(), tmp_path / "profile")
    assert any("canary-err" in line for line in console), console
    assert any("Uncaught" in line for line in console), console


def test_page_is_offline_escaped_and_safe(gallery):
    page, cards = gallery
    text = page.read_text()
    assert not re.search(r"https?://|//cdn|@import|@font-face", text)  # nothing from outside
    assert text.count("<script") == 2  # the JSON block and the page's own script, nothing injected
    data = text.split('id="gallery-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and ">" not in data and "&" not in data  # inert inside <script>
    assert "<title>Steps &lt;b&gt;&amp;&lt;/b&gt; CAMs</title>" in text
    bad = json.loads(json.dumps(cards[:1]))
    bad[0]["rows"][0]["input"] = "missing.jpg"
    with pytest.raises(FileNotFoundError):
        write_gallery_page(page.parent, bad, [MODEL_A], "t")
    bad[0]["cells"] = "../escape/"
    with pytest.raises(ValueError):
        write_gallery_page(page.parent, bad, [MODEL_A], "t")


def test_loads_without_console_errors_and_runs_no_injected_code(gallery, tmp_path):
    page, _ = gallery
    dumped, console = chromium(page.as_uri(), tmp_path / "profile")
    assert console == [], "console messages / uncaught errors:\n" + "\n".join(console)
    dom = Dom(dumped)
    assert dom.body_attrs.get("data-ready") == "1", "the page's JS did not finish"
    assert (dom.body_attrs.get("data-loaded"), dom.body_attrs.get("data-failed")) == ("30", "0")  # 6 cards x (input + 1 step, input + 2 steps)
    assert len(dom.cards) == 6 and dom.shown() == [3, 5, 1, 4, 0, 2]  # sorted by change
    assert dom.count == "6 of 6 images"
    assert "data-pwned" not in dom.html_attrs and 'data-pwned="' not in dumped  # no injected code ran
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dumped
    assert all([r["data-model"] for r in c["rows"]] == [MODEL_A, MODEL_B] for c in dom.cards)


def test_model_filter_hides_rows_and_other_filters(gallery, tmp_path):
    page, _ = gallery
    dumped, console = chromium(f"{page.as_uri()}?model={quote(MODEL_B, safe='')}", tmp_path / "p1")
    dom = Dom(dumped)
    assert console == [] and len(dom.shown()) == 6  # every card has a row of B
    for card in dom.cards:
        hidden = {r["data-model"]: "hidden" in r for r in card["rows"]}
        assert hidden == {MODEL_A: True, MODEL_B: False}
    dumped, console = chromium(f"{page.as_uri()}?correct=correct&sort=name", tmp_path / "p2")
    dom = Dom(dumped)
    assert console == [] and dom.shown() == [0, 2, 4, 5] and dom.count == "4 of 6 images"
    dumped, console = chromium(f"{page.as_uri()}?class={quote(EVIL_CLASS, safe='')}&correct=bogus", tmp_path / "p3")
    assert console == [] and Dom(dumped).shown() == [1, 4]  # an unknown choice (correct=bogus) is ignored


def test_compare_view_switches_steps_and_zoom_reads(gallery, tmp_path):
    page, _ = gallery
    seen = {}
    for step in (1, 2):
        dumped, console = chromium(f"{page.as_uri()}?compare=3&step={step}&model={quote(MODEL_B, safe='')}",
                                   tmp_path / f"c{step}")
        dom = Dom(dumped)
        assert console == [] and "hidden" not in dom.dialogs["compare"]
        a, b = dom.dialogs["cmp-pic-a"], dom.dialogs["cmp-pic-b"]
        assert a["data-model"] == b["data-model"] == MODEL_B and a["data-step"] == b["data-step"] == str(step)
        seen[step] = re.search(r'id="cmp-pic-b"[^>]*><div class="pic"><img[^>]*src="([^"]+)"', dumped).group(1)
    assert seen[1].endswith("b_s1.jpg") and seen[2].endswith("b_s2.jpg")
    # two models of which one has a single step: its pane stays at step 1 and offers no step 2
    dumped, console = chromium(f"{page.as_uri()}?compare=3&step=2", tmp_path / "c3")
    dom = Dom(dumped)
    a, b = dom.dialogs["cmp-pic-a"], dom.dialogs["cmp-pic-b"]
    assert console == [] and (a["data-model"], a["data-step"], b["data-model"], b["data-step"]) == (MODEL_A, "1", MODEL_B, "2")
    options = lambda sel: re.findall(r'<option value="(\d+)"', re.search(rf'id="{sel}"[^>]*>(.*?)</select>', dumped).group(1))
    assert options("cmp-step-a") == ["1"] and options("cmp-step-b") == ["1", "2"]
    # the view's own show / boxes controls, set from the page's state
    dumped, console = chromium(f"{page.as_uri()}?compare=3&step=2&view=map&boxes=0", tmp_path / "c4")
    assert console == [] and 'id="cmp-view"' in dumped and 'id="cmp-boxes"' in dumped
    assert re.search(r'id="cmp-pic-b"[^>]*><div class="pic"><img[^>]*src="[^"]*b_s2_map.jpg"', dumped)
    assert re.search(r'<body[^>]*class="[^"]*no-boxes', dumped)
    dumped, console = chromium(f"{page.as_uri()}?zoom=3,1,2&view=map", tmp_path / "z")
    dom = Dom(dumped)
    assert console == [] and "hidden" not in dom.dialogs["zoom"] and dom.dialogs["zoom"]["data-step"] == "2"
    assert re.search(r'id="zoom-pic"[^>]*><div class="pic"><img[^>]*src="[^"]*b_s2_map.jpg"', dumped)
    assert BREAKOUT in json.loads(json.dumps(re.search(r'id="zoom-cap" class="cap">([^<]*)<', dumped).group(1)))\
        .replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def test_contact_sheet(gallery, tmp_path):
    pngs = sorted((gallery[0].parent / "figures").glob("*.png"))  # figure i: (120 + 20 i) x 80, one colour
    out = contact_sheet(pngs, tmp_path / "sheet.png", columns=4, thumb_width=60, pad=4)
    with Image.open(out) as im:
        row1, row2 = 40, 24  # tallest thumbnail per row: 120x80 -> 60x40 (figure 0), 200x80 -> 60x24 (figure 4)
        assert im.size == (4 + 4 * 64, 4 + row1 + 4 + row2 + 4)
        assert im.getpixel((4 + 30, 4 + 20)) == (0, 120, 255)  # figure 0
        assert im.getpixel((4 + 3 * 64 + 30, 4 + 20)) == (120, 120, 135)  # figure 3 (60x27), centred
        assert im.getpixel((4 + 3 * 64 + 30, 4 + 2)) == (255, 255, 255)  # above figure 3: padding
        assert im.getpixel((4 + 64 + 30, 4 + row1 + 4 + 12)) == (200, 120, 55)  # figure 5: row 2, column 2
        assert im.getpixel((4 + 2 * 64 + 30, 4 + row1 + 4 + 12)) == (255, 255, 255)  # empty cell
