"""Property-based fuzzing of everything tdviz reads from a user: every annotation format, images
and checkpoints. Whatever the bytes, only tdviz's own error (one sentence, TdvizError) may
escape; any other exception is a bug.

Bounded for CI (a few seconds per reader). Run one reader long with, e.g.,
``TDVIZ_FUZZ_SECONDS=600 python -m pytest -q -s tests/test_fuzz_inputs.py -k coco`` (or ``xml``, ``csv``,
``wsolevaluation``, ``label``, ``images``, ``checkpoints``): the test then
starts fresh hypothesis runs (new random examples) until the time is spent and prints how many
inputs it tried.
"""

import functools
import io
import json
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tdviz.checkpoints import load_weights, read_state_dict
from tdviz.errors import TdvizError
from tdviz.images import read_image
from tdviz.wsol.annotations import (
    load_wsol_dataset,
    read_coco,
    read_flat_labels,
    read_ilsvrc_xml,
    read_imagefolder_labels,
    read_loc_csv,
    read_wsolevaluation,
)

FUZZ_SECONDS = float(os.environ.get("TDVIZ_FUZZ_SECONDS", "0") or 0)
EXAMPLES = int(os.environ.get("TDVIZ_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
CLASSES = {f"n{k:08d}": k for k in range(4)}
IMAGES = ("a", "b", "c.1", "d")


@functools.lru_cache(maxsize=1)
def image_root() -> Path:
    """A few real images the fuzzed annotations may name (kept for the whole session)."""
    root = Path(tempfile.mkdtemp(prefix="tdviz-fuzz-images-"))
    rng = np.random.default_rng(0)
    for i, stem in enumerate(IMAGES):
        Image.fromarray((rng.random((20 + i, 30, 3)) * 255).astype(np.uint8)).save(root / f"{stem}.png")
    Image.fromarray(np.full((20, 30), 255, np.uint8)).save(root / "mask.png")
    return root


def run_fuzz(name: str, inner) -> None:
    """Run a hypothesis test once, or again and again until TDVIZ_FUZZ_SECONDS have passed."""
    if not FUZZ_SECONDS:
        inner()
        return
    end, runs = time.time() + FUZZ_SECONDS, 0
    while time.time() < end:
        inner()
        runs += 1
    print(f"\nfuzz {name}: {runs * EXAMPLES} inputs in {FUZZ_SECONDS:.0f} s, no escape")


def only_tdviz_errors(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except TdvizError as exc:
        assert str(exc).strip(), "an error without a message"
        return None


def mutated(data: bytes):
    """Strategy: ``data`` with bytes flipped, cut, repeated or inserted."""
    ops = st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "dup"]), st.integers(0, max(len(data) - 1, 0)),
                             st.binary(min_size=1, max_size=8)), min_size=1, max_size=6)

    def apply(edits):
        b = bytearray(data)
        for op, at, blob in edits:
            at = min(at, len(b))
            if op == "flip" and b:
                b[min(at, len(b) - 1)] ^= blob[0] or 1
            elif op == "cut":
                del b[at:at + len(blob) * 17]
            elif op == "insert":
                b[at:at] = blob
            elif op == "dup":
                b[at:at] = b[at:at + 64]
        return bytes(b)

    return ops.map(apply)


NUMBER = st.one_of(
    st.integers(-10 ** 6, 10 ** 6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e999", "-1e999", "nan", "inf", "9" * 5000, "0x1f", "", " ", "1.5", "-0", "+3", "\u0663", "1_0"]),
)
NAME = st.one_of(st.sampled_from([*(f"{s}.png" for s in IMAGES), *IMAGES, ".", "..", "", "a/../b.png", "/abs.png",
                                  "mask.png", "x y.png", "a,b.png"]), st.text(max_size=12))
TOKEN = st.one_of(NUMBER, NAME, st.sampled_from([*CLASSES, "n99999999", ","]))


def text_file(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8", errors="surrogatepass")


# --------------------------------------------------------------------------- annotation readers

VALID_XML = (b"<annotation><size><width>30</width><height>20</height></size><object><name>n00000001</name>"
             b"<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>20</xmax><ymax>15</ymax></bndbox></object></annotation>")


@st.composite
def xml_documents(draw):
    objects = "".join(
        f"<object><name>{draw(TOKEN)}</name><bndbox>" + "".join(f"<{t}>{draw(NUMBER)}</{t}>" for t in
                                                               ("xmin", "ymin", "xmax", "ymax")) + "</bndbox></object>"
        for _ in range(draw(st.integers(0, 3))))
    return (f"<annotation><size><width>{draw(NUMBER)}</width><height>{draw(NUMBER)}</height></size>{objects}"
            "</annotation>").encode("utf-8", "surrogatepass")


def test_fuzz_ilsvrc_xml():
    @FUZZ
    @given(st.lists(st.one_of(xml_documents(), mutated(VALID_XML), st.binary(max_size=300)), min_size=1, max_size=3),
           st.lists(st.sampled_from(IMAGES), min_size=1, max_size=3))
    def inner(docs, stems):
        with tempfile.TemporaryDirectory() as d:
            for doc, stem in zip(docs, stems):
                text_file(Path(d) / f"{stem}.xml", doc)
            only_tdviz_errors(read_ilsvrc_xml, d, image_root(), CLASSES)
            only_tdviz_errors(load_wsol_dataset, d, image_root(), CLASSES)

    run_fuzz("xml", inner)


def test_fuzz_loc_csv():
    @FUZZ
    @given(st.sampled_from(["ImageId,PredictionString", "\ufeffImageId,PredictionString", "PredictionString,ImageId",
                            "ImageId", ""]),
           st.lists(st.lists(TOKEN, max_size=12).map(" ".join), max_size=5), st.lists(NAME, max_size=5),
           st.binary(max_size=200))
    def inner(header, predictions, ids, junk):
        lines = [header] + [f"{i},{p}" for i, p in zip(ids, predictions)]
        with tempfile.TemporaryDirectory() as d:
            text_file(Path(d) / "LOC_val_solution.csv", "\n".join(lines) + ("\n" if junk else ""))
            only_tdviz_errors(read_loc_csv, Path(d) / "LOC_val_solution.csv", image_root(), CLASSES)
            text_file(Path(d) / "junk.csv", junk)
            only_tdviz_errors(load_wsol_dataset, Path(d) / "junk.csv", image_root(), CLASSES)

    run_fuzz("csv", inner)


def test_fuzz_wsolevaluation_metadata():
    line = st.lists(TOKEN, min_size=1, max_size=6).map(",".join)
    files = st.lists(line, max_size=6).map("\n".join)

    @FUZZ
    @given(files, files, files, st.one_of(st.none(), files), st.booleans())
    def inner(ids, labels, loc, sizes, guess_root):
        with tempfile.TemporaryDirectory() as d:
            meta = Path(d) / "meta"
            for name, content in (("image_ids.txt", ids), ("class_labels.txt", labels), ("localization.txt", loc),
                                  ("image_sizes.txt", sizes)):
                if content is not None:
                    text_file(meta / name, content)
            only_tdviz_errors(read_wsolevaluation, meta, image_root())
            only_tdviz_errors(load_wsol_dataset, meta, None if guess_root else image_root())

    run_fuzz("wsolevaluation", inner)


JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from([10 ** 400, -(10 ** 400), 2 ** 63, 2 ** 64]),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8), NAME)
JSON_ANY = st.recursive(JSON_LEAF, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                          st.dictionaries(st.text(max_size=6), kids, max_size=3)),
                        max_leaves=12)


@st.composite
def coco_documents(draw):
    def maybe(value):
        return draw(st.one_of(st.just(value), JSON_ANY))

    images = [{"id": maybe(i), "file_name": maybe(draw(NAME)), "width": maybe(30), "height": maybe(20)}
              for i in range(draw(st.integers(0, 3)))]
    anns = [{"id": maybe(i), "image_id": maybe(draw(st.integers(-1, 3))), "category_id": maybe(draw(st.integers(0, 4))),
             "bbox": maybe([draw(st.one_of(st.integers(-5, 40), st.floats(allow_nan=True))) for _ in range(4)]),
             "area": maybe(10.0)} for i in range(draw(st.integers(0, 4)))]
    cats = maybe([{"id": maybe(draw(st.integers(0, 4))), "name": maybe(draw(st.sampled_from(list(CLASSES)))),
                   "wnid": maybe("n00000001")} for _ in range(draw(st.integers(0, 4)))])
    doc = {"images": maybe(images), "annotations": maybe(anns), "categories": cats}
    return json.dumps(doc, allow_nan=True) if draw(st.booleans()) else json.dumps(maybe(doc))


def test_fuzz_coco():
    valid = json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 30, "height": 20}],
                        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 8]}],
                        "categories": [{"id": 1, "name": "x"}]}).encode()
    raw = st.one_of(mutated(valid), st.binary(max_size=200),
                    st.sampled_from([b"[" * 100_000, b'{"images": ' + b"[" * 50_000, b"9" * 6000,
                                     b'{"images": [], "annotations": [], "categories": true}',
                                     b'{"images": [{"id": 1' + b"9" * 5000 + b', "file_name": "a.png"}], '
                                     b'"annotations": [], "categories": []}']))

    @FUZZ
    @given(st.one_of(coco_documents(), raw), st.booleans())
    def inner(doc, with_index):
        with tempfile.TemporaryDirectory() as d:
            text_file(Path(d) / "instances.json", doc)
            only_tdviz_errors(read_coco, Path(d) / "instances.json", image_root(), CLASSES if with_index else None)
            only_tdviz_errors(load_wsol_dataset, Path(d) / "instances.json", image_root())

    run_fuzz("coco", inner)


def test_fuzz_label_lists_and_image_folders():
    @FUZZ
    @given(st.lists(st.lists(TOKEN, min_size=1, max_size=3).map(" ".join), max_size=6).map("\n".join),
           st.lists(st.text(min_size=1, max_size=6), max_size=3), st.booleans())
    def inner(listing, class_dirs, loop):
        with tempfile.TemporaryDirectory() as d:
            text_file(Path(d) / "labels.txt", listing)
            only_tdviz_errors(read_flat_labels, image_root(), Path(d) / "labels.txt", CLASSES)
            folder = Path(d) / "folder"
            folder.mkdir()
            for name in class_dirs:
                try:
                    (folder / name).mkdir(parents=True, exist_ok=True)
                    (folder / name / "x.png").write_bytes((image_root() / "a.png").read_bytes())
                except (OSError, ValueError):  # a name the file system refuses is not an input
                    continue
            if loop:
                os.symlink(".", folder / "loop")
            only_tdviz_errors(read_imagefolder_labels, folder)

    run_fuzz("labels", inner)


# --------------------------------------------------------------------------- images and checkpoints


@functools.lru_cache(maxsize=1)
def image_bytes() -> list[bytes]:
    rng = np.random.default_rng(1)
    img = Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8))
    out = []
    for fmt, extra in (("PNG", {}), ("JPEG", {"quality": 80}), ("BMP", {}), ("GIF", {}), ("TIFF", {}),
                       ("WEBP", {}), ("PPM", {})):
        buf = io.BytesIO()
        img.save(buf, format=fmt, **extra)
        out.append(buf.getvalue())
    return out


def test_fuzz_images():
    @FUZZ
    @given(st.one_of(st.sampled_from(range(7)).flatmap(lambda i: mutated(image_bytes()[i])), st.binary(max_size=400)),
           st.sampled_from([".png", ".jpg", ".bmp", ".gif", ".tif", ".webp", ".ppm", ""]))
    def inner(data, suffix):
        with tempfile.NamedTemporaryFile(suffix=suffix) as fh:
            fh.write(data)
            fh.flush()
            img = only_tdviz_errors(read_image, fh.name)
            assert img is None or (img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3)

    run_fuzz("images", inner)


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
        self.bn = torch.nn.BatchNorm1d(2)


@functools.lru_cache(maxsize=1)
def checkpoint_bytes() -> list[bytes]:
    from safetensors.torch import save

    model = _Tiny()
    out = []
    for obj in (model.state_dict(), {"state_dict": model.state_dict(), "epoch": 3}):
        buf = io.BytesIO()
        torch.save(obj, buf)
        out.append(buf.getvalue())
    out.append(save({k: v.contiguous() for k, v in model.state_dict().items()}))
    out.append(pickle.dumps({"fc.weight": [1, 2]}))
    return out


def test_fuzz_checkpoints():
    @FUZZ
    @given(st.sampled_from(range(4)).flatmap(lambda i: mutated(checkpoint_bytes()[i]).map(lambda b: (i, b))),
           st.sampled_from([".pth", ".pth.tar", ".safetensors", ".bin"]))
    def inner(item, suffix):
        index, data = item
        if index == 2:
            suffix = ".safetensors"
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / f"ckpt{suffix}"
            path.write_bytes(data)
            only_tdviz_errors(read_state_dict, path)
            only_tdviz_errors(load_weights, _Tiny(), path)
            only_tdviz_errors(read_state_dict, path, ema=True)

    run_fuzz("checkpoints", inner)
