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
        elif tag == "img" and self.cards and a.get("id") != "lb-img":
            self.imgs += 1
        self._in_count = a.get("id") == "count"

    def handle_data(self, data):
        if self._in_count:
            self.count += data
            self._in_count = False

    def shown(self) -> list[int]:
        return [int(c["data-index"]) for c in self.cards if "hidden" not in c]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    out = tmp_path_factory.mktemp("gallery")
    (out / "figs").mkdir()
    specs = [  # model(s), class, correct, change, caption
        (MODEL_A, "goldfinch", True, 0.10, "plain & simple"),
        (MODEL_A, EVIL_CLASS, False, 0.50, "an <em>evil</em> class"),
        (MODEL_A, "water ouzel", True, 0.05, "with a pdf"),
        (MODEL_B, "goldfinch", False, 0.90, "step 2 shifts to the head"),
        (MODEL_B, EVIL_CLASS, True, 0.30, BREAKOUT),
        ([MODEL_A, MODEL_B], "water ouzel", True, 0.70, "both models side by side"),
    ]
    items = []
    for i, (model, cls, ok, change, caption) in enumerate(specs):
        rel = f"figs/fig {i}.png"  # a space: URLs must be quoted
        Image.new("RGB", (120 + 20 * i, 80), (40 * i, 120, 255 - 40 * i)).save(out / rel)
        item = {"image": rel, "model": model if isinstance(model, str) else "resnet50 vs td",
                "class": cls, "correct": ok, "change": change, "caption": caption}
        if not isinstance(model, str):
            item["models"] = model
        if i == 2:
            (out / "figs/fig 2.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
            item["pdf"] = "figs/fig 2.pdf"
        items.append(item)
    return write_gallery_page(out, items, TITLE)


def test_chromium_console_capture_works(tmp_path):
    canary = tmp_path / "canary.html"
    canary.write_text('<!DOCTYPE html><body><script>console.error("canary-err"); undefinedFn();</script></body>')
    _, console = chromium(canary.as_uri(), tmp_path / "profile")
    assert any("canary-err" in line for line in console), console
    assert any("Uncaught" in line for line in console), console


def test_page_is_offline_escaped_and_safe(gallery):
    text = gallery.read_text()
    assert not re.search(r"https?://|//cdn|@import|@font-face", text)  # nothing from outside
    assert text.count("<script") == 2  # the JSON block and the page's own script, nothing injected
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; friends" in text
    data = text.split('id="gallery-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and ">" not in data and "&" not in data  # inert inside <script>
    assert "<title>Steps &lt;b&gt;&amp;&lt;/b&gt; CAMs</title>" in text
    with pytest.raises(FileNotFoundError):
        write_gallery_page(gallery.parent, [{"image": "figs/missing.png", "model": "m"}], "t")
    with pytest.raises(ValueError):
        write_gallery_page(gallery.parent, [{"image": "../escape.png", "model": "m"}], "t")


def test_all_figures_load_without_console_errors(gallery, tmp_path):
    dumped, console = chromium(gallery.as_uri(), tmp_path / "profile")
    assert console == [], "console messages / uncaught errors:\n" + "\n".join(console)
    dom = Dom(dumped)
    assert dom.body_attrs.get("data-ready") == "1", "the page's JS did not finish"
    assert (dom.body_attrs.get("data-loaded"), dom.body_attrs.get("data-failed")) == ("6", "0")
    assert len(dom.cards) == dom.imgs == 6 and dom.shown() == [3, 5, 1, 4, 0, 2]  # sorted by change
    assert dom.count == "6 of 6 shown"
    assert "data-pwned" not in dom.html_attrs and 'data-pwned="' not in dumped  # no injected code ran
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dumped
    assert {c["data-model"] for c in dom.cards} == {MODEL_A, MODEL_B, "resnet50 vs td"}
    assert sorted(c["data-correct"] for c in dom.cards) == ["false"] * 2 + ["true"] * 4
    assert [c["data-class"] for c in dom.cards].count(EVIL_CLASS) == 2


def test_query_presets_filters(gallery, tmp_path):
    dumped, console = chromium(f"{gallery.as_uri()}?model={quote(MODEL_B, safe='')}", tmp_path / "p1")
    assert console == []
    dom = Dom(dumped)
    assert sorted(dom.shown()) == [3, 4, 5]  # B's own figures and the one showing both models
    assert all(c["data-model"] == MODEL_A for c in dom.cards if "hidden" in c)
    assert dom.count == "3 of 6 shown"

    dumped, console = chromium(f"{gallery.as_uri()}?model={MODEL_A}&correct=correct&sort=name", tmp_path / "p2")
    dom = Dom(dumped)
    assert console == [] and dom.shown() == [0, 2, 5] and dom.count == "3 of 6 shown"  # by name: fig 0, 2, 5

    dumped, console = chromium(f"{gallery.as_uri()}?class={quote(EVIL_CLASS, safe='')}&correct=bogus", tmp_path / "p3")
    dom = Dom(dumped)
    assert console == [] and dom.shown() == [1, 4]  # an unknown choice (correct=bogus) is ignored


def test_lightbox_opens_steps_and_closes(gallery, tmp_path):
    probe = """<script>window.addEventListener("load", function () {
      var r = {}, lb = document.getElementById("lightbox");
      var thumb = document.querySelector('.card[data-index="4"] .thumb');
      thumb.click();
      r.open = !lb.hidden; r.src = document.getElementById("lb-img").getAttribute("src");
      r.caption = document.getElementById("lb-caption").textContent;
      document.dispatchEvent(new KeyboardEvent("keydown", {key: "ArrowRight"}));
      r.next = document.getElementById("lb-img").getAttribute("src");
      document.dispatchEvent(new KeyboardEvent("keydown", {key: "Escape"}));
      r.closedByEsc = lb.hidden;
      document.querySelector('.card[data-index="2"] .thumb').click();
      r.pdf = document.getElementById("lb-pdf").getAttribute("href");
      lb.click(); r.closedByClick = lb.hidden;
      document.body.setAttribute("data-probe", JSON.stringify(r));
    });</script></body>"""
    page = gallery.parent / "probe.html"
    page.write_text(gallery.read_text().replace("</body>", probe))
    dumped, console = chromium(page.as_uri(), tmp_path / "profile")
    assert console == []
    r = json.loads(Dom(dumped).body_attrs["data-probe"])
    assert r["open"] and r["src"] == "figs/fig%204.png" and r["next"] == "figs/fig%200.png"  # next shown card
    assert BREAKOUT in r["caption"] and EVIL_CLASS in r["caption"]  # labels went in as text
    assert r["closedByEsc"] and r["closedByClick"] and r["pdf"] == "figs/fig%202.pdf"


def test_contact_sheet(gallery, tmp_path):
    pngs = sorted((gallery.parent / "figs").glob("*.png"))  # figure i: (120 + 20 i) x 80, one colour
    out = contact_sheet(pngs, tmp_path / "sheet.png", columns=4, thumb_width=60, pad=4)
    with Image.open(out) as im:
        row1, row2 = 40, 24  # tallest thumbnail per row: 120x80 -> 60x40 (figure 0), 200x80 -> 60x24 (figure 4)
        assert im.size == (4 + 4 * 64, 4 + row1 + 4 + row2 + 4)
        assert im.getpixel((4 + 30, 4 + 20)) == (0, 120, 255)  # figure 0
        assert im.getpixel((4 + 3 * 64 + 30, 4 + 20)) == (120, 120, 135)  # figure 3 (60x27), centred
        assert im.getpixel((4 + 3 * 64 + 30, 4 + 2)) == (255, 255, 255)  # above figure 3: padding
        assert im.getpixel((4 + 64 + 30, 4 + row1 + 4 + 12)) == (200, 120, 55)  # figure 5: row 2, column 2
        assert im.getpixel((4 + 2 * 64 + 30, 4 + row1 + 4 + 12)) == (255, 255, 255)  # empty cell
