"""Inputs that used to crash or hang, each reproduced as a user meets it: it now ends in one
sentence naming the input and the fix (a batch skips the item and goes on)."""

import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from tdviz.demo import make_demo_split
from tdviz.errors import TdvizError
from tdviz.images import ImageError, read_image
from tdviz.models.demo_zoo import load_demo_model
from tdviz.wsol.annotations import demo_class_index, load_wsol_dataset, read_coco, read_wsolevaluation
from tdviz.wsol.evaluate import WsolConfig, run_wsol


def cli(*args, timeout=None):
    return run_cli(*args)


def one_clean_error(res):
    return res.returncode != 0 and "Traceback" not in res.stderr and "error:" in res.stderr


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return make_demo_split(tmp_path_factory.mktemp("demo") / "split", n=12, seed=5, workers=1)


def png_bomb(path, side=30000):
    """A real, decodable 1-bit PNG of side x side pixels, about 100 KB on disk."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = b"\x00" + bytes((side + 7) // 8)
    body = b"".join(z.compress(row * 1000) for _ in range(side // 1000)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


# --------------------------------------------------------------------------- annotation files


def test_xml_width_1e999(split, tmp_path):
    xml_dir = tmp_path / "xml"
    shutil.copytree(split / "boxes_xml", xml_dir)
    first = min(xml_dir.iterdir())
    first.write_text(first.read_text().replace("<width>224</width>", "<width>1e999</width>"))
    data = load_wsol_dataset(xml_dir, images_root=split / "images", class_index=demo_class_index())
    assert len(data) == 12 and any("1e999" in p and "not a valid image size" in p for p in data.problems)
    assert data.samples[0].width == 224  # from the image itself


@pytest.mark.parametrize("text, expect", ids=["5000 digits", "deep nesting", "categories true"], argvalues=[
    ('{"images": [{"id": 1' + "0" * 5000 + ', "file_name": "a.png"}], "annotations": [], "categories": []}',
     "cannot be read"),
    ("[" * 100_000 + "]" * 100_000, "too deeply"),
    ('{"images": [], "annotations": [], "categories": true}', "'categories' that is a bool"),
])
def test_coco_files_that_crashed_the_reader(tmp_path, text, expect):
    path = tmp_path / "instances.json"
    path.write_text(text)
    with pytest.raises(TdvizError, match=expect):
        read_coco(path, tmp_path)
    res = cli("wsol", "--boxes", path, "--data", tmp_path, "--out", tmp_path / "out")
    assert one_clean_error(res) and "instances.json" in res.stderr


def test_coco_repeated_category_id_keeps_every_label(split, tmp_path):
    coco = json.loads((split / "instances_val.json").read_text())
    coco["categories"].insert(2, dict(coco["categories"][1], name="duplicate"))
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(coco))
    samples, problems = read_coco(path, split)
    clean, _ = read_coco(split / "instances_val.json", split)
    assert [s.label for s in samples] == [s.label for s in clean] and len(samples) == 12
    assert any("repeats category id 2" in p for p in problems)


def test_wsolevaluation_dot_line_and_repeated_stem(split, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(split, root)
    meta = root / "wsol" / "box"
    ids = (meta / "image_ids.txt").read_text().splitlines()
    copy = root / "images" / "again" / os.path.basename(ids[0])
    copy.parent.mkdir()
    shutil.copy(root / ids[0], copy)
    extra = f"images/again/{os.path.basename(ids[0])}"
    (meta / "image_ids.txt").write_text("\n".join([".", *ids, extra]) + "\n")
    with open(meta / "class_labels.txt", "a") as fh:
        fh.write(f".,1\n{extra},0\n")
    with open(meta / "localization.txt", "a") as fh:
        fh.write(f"{extra},1,2,30,40\n")
    samples, problems = read_wsolevaluation(meta, root)
    assert len(samples) == 13 and len({s.image_id for s in samples}) == 13
    assert any("(.)" in p and "does not exist" in p for p in problems)


def test_wsolevaluation_repeated_label_and_wrong_size_are_reported(split, tmp_path):
    meta = tmp_path / "meta"
    shutil.copytree(split / "wsol" / "box", meta)
    first = (meta / "image_ids.txt").read_text().splitlines()[0]
    label = int(dict(line.rsplit(",", 1) for line in (meta / "class_labels.txt").read_text().split())[first])
    other = (label + 1) % 10
    with open(meta / "class_labels.txt", "a") as fh:
        fh.write(f"{first},{other}\n")
    sizes = (meta / "image_sizes.txt").read_text().replace(f"{first},224,224", f"{first},500,375")
    (meta / "image_sizes.txt").write_text(sizes)
    samples, problems = read_wsolevaluation(meta, split)
    repeated = [p for p in problems if f"listed again with label {other}" in p]
    assert len(repeated) == 1 and f"gave {label}" in repeated[0]
    original = next(s for s in samples if s.path.name == os.path.basename(first))
    res = run_wsol({"m": load_demo_model("demo_resnet")}, load_wsol_dataset(meta, split), tmp_path / "run",
                   WsolConfig(batch_size=4), workers=0, progress=False)
    assert any("500x375" in p and "224x224" in p for p in res["skipped"]), res["skipped"]
    assert original.label == label


# --------------------------------------------------------------------------- images, masks, folders


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ImageError, match="budget"):
        read_image(bomb)
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "ok.png")
    res = cli("cam", bomb, tmp_path / "ok.png", "--out", tmp_path / "out")
    assert res.returncode == 1 and "bomb.png" in res.stderr and "budget" in res.stderr
    assert (tmp_path / "out" / "ok_cam.png").is_file()


def test_mask_bomb_skips_that_image_only(split, tmp_path):
    data = load_wsol_dataset(split / "wsol" / "mask")
    data.samples[2].mask_paths = [png_bomb(tmp_path / "mask_bomb.png")]
    res = run_wsol({"m": load_demo_model("demo_resnet")}, data, tmp_path / "run", WsolConfig(batch_size=4),
                   workers=0, progress=False)
    assert res["images"] == 11 and any("mask_bomb.png" in p and "budget" in p for p in res["skipped"])


def test_symlink_loop_under_data_does_not_hang(split, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(split / "images", images)
    os.symlink(".", images / "loop")
    os.symlink("..", images / "n00000001" / "up")
    res = cli("wsol", "--model", "demo_resnet", "--data", images, "--boxes", split / "boxes_xml", "--workers", "0",
              "--box-workers", "0", "--out", tmp_path / "w", "--json", timeout=120)
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    assert payload["images"] == 12 and any("loop" in p for p in payload["skipped"])
    from tdviz.images import expand_inputs  # what `tdviz cam` and `tdviz gallery` walk with

    files, problems = expand_inputs([str(images)])
    assert len(files) == 12 and len(problems) == 2 and all("already walked" in p for p in problems)
    res = cli("selectivity", "--data", images, "--model", "demo_resnet", "--out", tmp_path / "s", "--json",
              "--workers", "0", timeout=120)
    assert res.returncode == 0 and json.loads(res.stdout)["images"] == 12


# --------------------------------------------------------------------------- where the output goes


def _unwritable_dir(tmp_path):
    """A folder that cannot be written to, also for root: a read-only tmpfs in a private mount
    namespace when this process may make one, else a place under /sys (sysfs refuses new files)."""
    target = tmp_path / "readonly"
    target.mkdir()
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o ro none {target}"], check=False,
                           capture_output=True)
    if probe.returncode == 0:
        return ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o ro none {target} && exec "$@"', "sh"], target / "out"
    return [], "/sys/tdviz-test-out"


def test_read_only_out_is_one_sentence(split, tmp_path):
    prefix, out = _unwritable_dir(tmp_path)
    for args in (["wsol", "--model", "demo_resnet", "--data", split / "images", "--boxes", split / "boxes_xml",
                  "--workers", "0", "--box-workers", "0", "--out", out],
                 ["cam", split / "images" / "n00000001", "--out", out]):
        res = subprocess.run([*prefix, sys.executable, "-m", "tdviz", *map(str, args)], check=False,
                             capture_output=True, text=True, timeout=300)
        assert one_clean_error(res), res.stderr
        assert str(out) in res.stderr or "readonly" in res.stderr


def test_disk_full_midway_keeps_the_finished_batches(tmp_path):
    split = make_demo_split(tmp_path / "split", n=36, seed=6, workers=1)
    base = ["wsol", "--model", "demo_resnet", "--data", split / "images", "--boxes", split / "boxes_xml",
            "--workers", "0", "--box-workers", "0", "--batch-size", "2"]
    clean = cli(*base, "--out", tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr
    state = (tmp_path / "clean" / "state.json").stat().st_size
    records = (tmp_path / "clean" / "records.jsonl").stat().st_size
    assert state < records
    limit = (state + records) // 2  # state.json fits, records.jsonl outgrows it midway

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "full"
    res = subprocess.run([sys.executable, "-m", "tdviz", *map(str, base), "--out", str(out)], check=False,
                         capture_output=True, text=True, timeout=300, preexec_fn=small_disk)
    assert one_clean_error(res) and "records.jsonl" in res.stderr, res.stderr
    assert json.loads((out / "state.json").read_text())["images"] > 0  # whole, and counting finished batches
    resumed = cli(*base, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "results.json").read_text())["models"] == \
        json.loads((tmp_path / "clean" / "results.json").read_text())["models"]


def test_coco_image_size_beyond_float(split, tmp_path):
    """Found by the long fuzz: a 400-digit width overflowed float()."""
    coco = json.loads((split / "instances_val.json").read_text())
    coco["images"][0]["width"] = 10 ** 400
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(coco))
    samples, _ = read_coco(path, split)
    assert len(samples) == 12 and samples[0].width == 224  # the image's own size
