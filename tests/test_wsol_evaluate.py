"""`tdviz wsol` end to end on the demo split: every annotation format, resuming after a kill."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_cli

from tdviz.demo import make_demo_split
from tdviz.models.demo_zoo import load_demo_model
from tdviz.wsol.annotations import demo_class_index, load_wsol_dataset
from tdviz.wsol.evaluate import WsolConfig, run_wsol


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return make_demo_split(tmp_path_factory.mktemp("demo") / "split", n=24, seed=3, workers=1)


@pytest.fixture(scope="module")
def model():
    return load_demo_model("demo_resnet_tdjoint")


SOURCES = {
    "xml": lambda s: load_wsol_dataset(s / "boxes_xml", images_root=s / "images", class_index=demo_class_index()),
    "csv": lambda s: load_wsol_dataset(s / "LOC_val_solution.csv", images_root=s / "images",
                                       class_index=demo_class_index()),
    "wsolevaluation": lambda s: load_wsol_dataset(s / "wsol" / "box"),
    "coco": lambda s: load_wsol_dataset(s / "instances_val.json"),
}


def test_every_annotation_format_gives_the_same_metrics(split, model, tmp_path):
    results = {}
    for kind, load in SOURCES.items():
        data = load(split)
        assert len(data) == 24 and not data.problems, (kind, data.problems[:2])
        out = run_wsol({"td": model}, data, tmp_path / kind, WsolConfig(batch_size=8), workers=0, progress=False)
        results[kind] = out["models"]
    first = results["xml"]
    assert first["td"]["2"]["n"] == 24 and set(first["td"]) == {"1", "2", "mc"}
    for kind, res in results.items():
        assert res == first, kind


def test_records_and_csv(split, model, tmp_path):
    data = SOURCES["xml"](split)
    run_wsol({"td": model}, data, tmp_path, WsolConfig(batch_size=8, limit=10), workers=0, progress=False,
             save_maps=tmp_path / "maps")
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(records) == 10 and len(records[0]["models"]["td"]["steps"]) == 2
    assert len(records[0]["models"]["td"]["steps"][0]["top5"]) == 5
    assert (tmp_path / "results.csv").read_text().splitlines()[0].startswith("model,step,top1_cls")
    assert len(list((tmp_path / "maps" / "td").glob("*.npz"))) == 10


def test_killed_run_and_killed_shard_resume_to_the_same_results(split, tmp_path):
    env = dict(os.environ, TDVIZ_CACHE=str(tmp_path / "cache"))
    cli_env = {"TDVIZ_CACHE": env["TDVIZ_CACHE"]}
    base = [sys.executable, "-m", "tdviz_cli.main", "wsol", "--model", "demo_resnet_tdjoint", "--data",
            str(split / "images"), "--boxes", str(split / "boxes_xml"), "--batch-size", "2", "--workers", "0",
            "--box-workers", "0", "--json"]
    clean = run_cli(*base[3:], "--out", tmp_path / "clean", env=cli_env)  # only the killed runs need a process
    assert clean.returncode == 0, clean.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(base + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    records = out / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (records.exists() and records.read_text().count("\n") >= 4):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists(), "the run finished before it could be killed"
    resumed = run_cli(*base[3:], "--out", out, "--resume", env=cli_env)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "results.json").read_text()) == json.loads((tmp_path / "clean" / "results.json").read_text())
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 24 and len({json.loads(x)["image_id"] for x in lines}) == 24
    # a shard killed mid-run, the other shard finished, the killed one resumed: one run's results
    sharded = tmp_path / "sharded"
    proc = subprocess.Popen(base + ["--out", str(sharded), "--shard", "0/2"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    records = sharded / "shard-0-of-2" / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (records.exists() and records.read_text().count("\n") >= 4):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert records.read_text().count("\n") < 12, "the shard finished before it could be killed"
    other = run_cli(*base[3:], "--out", sharded, "--shard", "1/2", env=cli_env)
    assert other.returncode == 0 and not (sharded / "results.json").exists(), other.stderr
    resumed = run_cli(*base[3:], "--out", sharded, "--shard", "0/2", "--resume", env=cli_env)
    assert resumed.returncode == 0, resumed.stderr
    merged = json.loads((sharded / "results.json").read_text())
    assert merged == json.loads((tmp_path / "clean" / "results.json").read_text()) and merged["images"] == 24


def test_resume_with_other_settings_is_refused(split, model, tmp_path):
    data = SOURCES["xml"](split)
    run_wsol({"td": model}, data, tmp_path, WsolConfig(batch_size=8, limit=8), workers=0, progress=False)
    from tdviz.errors import TdvizError

    with pytest.raises(TdvizError, match="other settings"):
        run_wsol({"td": model}, data, tmp_path, WsolConfig(batch_size=8, limit=8, topk=3), resume=True, workers=0,
                 progress=False)


def test_box_worker_pool_gives_the_same_results(split, model, tmp_path):
    data = SOURCES["xml"](split)
    inline = run_wsol({"td": model}, data, tmp_path / "inline", WsolConfig(batch_size=8), workers=0, progress=False)
    pooled = run_wsol({"td": model}, data, tmp_path / "pool", WsolConfig(batch_size=8), workers=1, progress=False,
                      box_workers=2)
    assert pooled == inline


def test_boxes_labelled_on_the_device_equal_the_workers(split, model, tmp_path, monkeypatch):
    """On a GPU the Grad-CAM rule's components are labelled there; forced here on the CPU, the
    results and records equal those of the OpenCV path in the box workers."""
    from tdviz.wsol import pipeline

    data = SOURCES["xml"](split)
    workers = run_wsol({"td": model}, data, tmp_path / "cv2", WsolConfig(batch_size=8), workers=0, progress=False)
    monkeypatch.setattr(pipeline, "_components_on_device", lambda device: True)
    device = run_wsol({"td": model}, data, tmp_path / "torch", WsolConfig(batch_size=8), workers=0, progress=False)
    assert device == workers
    assert (tmp_path / "torch" / "records.jsonl").read_text() == (tmp_path / "cv2" / "records.jsonl").read_text()


def test_box_workers_do_not_load_torch():
    """The pool's workers import only tdviz.wsol.extract: numpy and OpenCV start in a fraction of
    torch's time and memory (about 0.7 GB per worker)."""
    from tdviz.wsol.evaluate import box_pool

    pool = box_pool(1)
    try:
        assert pool.submit(eval, "'torch' in __import__('sys').modules").result(timeout=120) is False
        assert pool.submit(eval, "'cv2' in __import__('sys').modules").result(timeout=120) is True
    finally:
        pool.shutdown()


def test_unreadable_mask_skips_that_image_and_keeps_the_rest(split, model, tmp_path):
    from tdviz.wsol.annotations import read_wsolevaluation

    data = SOURCES["xml"](split)
    masked, problems = read_wsolevaluation(split / "wsol" / "mask", data_root=split)
    assert not problems
    by_id = {s.image_id: s for s in masked}
    for s in data.samples:
        s.mask_paths, s.ignore_path = by_id[s.image_id].mask_paths, by_id[s.image_id].ignore_path
    broken = data.samples[3]
    broken.mask_paths = [str(tmp_path / "gone.png")]
    res = run_wsol({"td": model}, data, tmp_path / "out", WsolConfig(batch_size=8), workers=0, progress=False,
                   box_workers=1)
    assert res["models"]["td"]["2"]["n"] == 23 and res["images"] == 23
    assert len(res["skipped"]) == 1 and broken.image_id in res["skipped"][0] and "gone.png" in res["skipped"][0]
    assert res["models"]["td"]["2"]["pxap"] > 0
    lines = (tmp_path / "out" / "records.jsonl").read_text().splitlines()
    assert len(lines) == 23 and broken.image_id not in {json.loads(x)["image_id"] for x in lines}


def test_shards_without_an_image_merge_too(split, model, tmp_path):
    """More shards than batches (2 images, one batch, 4 shards): the empty shards finish and the
    merge counts the one that holds the images (the merge once failed on their missing records)."""
    data = SOURCES["xml"](split)
    cfg = WsolConfig(limit=2)
    for index in (3, 1, 2, 0):
        merged = run_wsol({"td": model}, data, tmp_path / "sharded", cfg, workers=0, progress=False,
                          shard=(index, 4))
    single = run_wsol({"td": model}, data, tmp_path / "one", cfg, workers=0, progress=False)
    assert merged["shards"] == 4 and merged["images"] == 2 and merged["models"] == single["models"]


def test_shards_merge_to_the_results_of_one_run(split, model, tmp_path, monkeypatch):
    from tdviz.wsol.loader import ramp_batches
    from tdviz.wsol.shards import parse_shard, shard_from_env

    data = SOURCES["xml"](split)
    single = run_wsol({"td": model}, data, tmp_path / "one", WsolConfig(batch_size=4, limit=21), workers=0,
                      progress=False)
    out = tmp_path / "sharded"
    first = run_wsol({"td": model}, data, out, WsolConfig(batch_size=4, limit=21), workers=0, progress=False,
                     shard=(1, 3))
    # shard 1 of 3 is every third batch of the unsharded run from the second: [1, 1, 2, 4, 4, 4, 4, 1]
    assert [len(b) for b in ramp_batches(21, 4)] == [1, 1, 2, 4, 4, 4, 4, 1]
    assert first["merged"] is False and first["images"] == 1 + 4 + 1 and not (out / "results.json").exists()
    monkeypatch.setenv("WORLD_SIZE", "3")  # the others as torchrun would start them
    for rank in ("2", "0"):
        monkeypatch.setenv("RANK", rank)
        last = run_wsol({"td": model}, data, out, WsolConfig(batch_size=4, limit=21), workers=0, progress=False)
    assert last["shards"] == 3
    merged = json.loads((out / "results.json").read_text())
    assert merged == json.loads((tmp_path / "one" / "results.json").read_text()) and merged["images"] == 21
    assert merged["models"] == single["models"]
    one_lines = sorted((tmp_path / "one" / "records.jsonl").read_text().splitlines())
    assert sorted((out / "records.jsonl").read_text().splitlines()) == one_lines
    assert (out / "results.csv").read_text() == (tmp_path / "one" / "results.csv").read_text()
    assert shard_from_env() == (0, 3) and parse_shard("2/4") == (2, 4)
    from tdviz.errors import TdvizError

    with pytest.raises(TdvizError, match="--shard"):
        parse_shard("4/4")
