"""`tdviz wsol` never mixes two runs, never loses finished work, and never reports a metric it
could not measure: identity-checked resume, a locked output folder, separate entries for two
checkpoints of one architecture, saved maps that reproduce results.json."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file

from tdviz.demo import make_demo_split
from tdviz.errors import TdvizError
from tdviz.models.demo_zoo import WEIGHTS_DIR, load_demo_model
from tdviz.wsol.annotations import demo_class_index, load_wsol_dataset, read_wsolevaluation
from tdviz.wsol.evaluate import WsolConfig, WsolRun, run_wsol
from tdviz.wsol.runstate import OutputLock
from tdviz.wsol.saved_maps import recompute_results

SHIPPED = WEIGHTS_DIR / "demo_resnet_tdjoint.safetensors"


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return make_demo_split(tmp_path_factory.mktemp("demo") / "split", n=24, seed=3, workers=1)


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory):
    """The shipped TDjoint weights with a changed classifier bias: the same architecture, other weights."""
    state = {k: v.float() for k, v in load_file(str(SHIPPED)).items()}
    state["fc.bias"] = state["fc.bias"] + torch.linspace(-1, 1, 10)
    path = tmp_path_factory.mktemp("weights") / "tdjoint_b.pth"
    model = load_demo_model("demo_resnet_tdjoint")
    model.load_state_dict({**model.state_dict(), **state})
    torch.save(model.state_dict(), path)
    return path


def xml(split):
    return load_wsol_dataset(split / "boxes_xml", images_root=split / "images", class_index=demo_class_index())


def cli(*args):
    return run_cli(*args)


def wsol_args(split, out, *extra):
    return ["wsol", "--data", split / "images", "--boxes", split / "boxes_xml", "--workers", "0", "--box-workers",
            "0", "--batch-size", "4", "--out", out, *extra]


def test_two_checkpoints_of_one_architecture_are_two_rows(split, other_weights, tmp_path):
    res = cli(*wsol_args(split, tmp_path / "w", "--model", "demo_resnet_tdjoint", "--weights", SHIPPED,
                         "--model", "demo_resnet_tdjoint", "--weights", other_weights, "--limit", "8", "--json"))
    assert res.returncode == 0, res.stderr
    models = json.loads(res.stdout)["models"]
    assert sorted(models) == ["demo_resnet_tdjoint@demo_resnet_tdjoint.safetensors", "demo_resnet_tdjoint@tdjoint_b.pth"]
    a, b = models.values()
    assert a["2"]["n"] == b["2"]["n"] == 8


def test_two_checkpoints_stay_apart_in_selectivity_shift_and_gallery(split, other_weights, tmp_path):
    pair = ["--model", "demo_resnet_tdjoint", "--weights", SHIPPED, "--model", "demo_resnet_tdjoint", "--weights",
            other_weights]
    labels = {"demo_resnet_tdjoint@demo_resnet_tdjoint.safetensors", "demo_resnet_tdjoint@tdjoint_b.pth"}
    res = cli("selectivity", "--data", split / "images", *pair, "--out", tmp_path / "s", "--json", "--workers", "0")
    assert res.returncode == 0, res.stderr
    assert {r["model"] for r in json.loads(res.stdout)["results"]} == labels
    res = cli("shift", "--boxes", split / "instances_val.json", *pair, "--out", tmp_path / "h", "--json")
    assert res.returncode == 0, res.stderr
    assert set(json.loads(res.stdout)["models"]) == labels
    res = cli("gallery", "--images", split / "images" / "n00000001", *pair, "--out", tmp_path / "g")
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "g" / "index.html").read_text()
    assert all(label in page for label in labels)


def test_resume_refuses_other_weights_data_or_annotations(split, other_weights, tmp_path):
    model = load_demo_model("demo_resnet_tdjoint")
    data = xml(split)
    WsolRun({"td": model}, data, tmp_path / "run", WsolConfig(batch_size=4)).run(workers=0, progress=False,
                                                                                  stop_after=2)
    changed = load_demo_model("demo_resnet_tdjoint")
    changed.load_state_dict(torch.load(other_weights, weights_only=True))
    with pytest.raises(TdvizError, match="the weights of 'td'"):
        run_wsol({"td": changed}, data, tmp_path / "run", WsolConfig(batch_size=4), resume=True, workers=0,
                 progress=False)
    moved = tmp_path / "moved"
    shutil.copytree(split / "images", moved)
    with pytest.raises(TdvizError, match=r"the images \(--data"):
        run_wsol({"td": model}, load_wsol_dataset(split / "boxes_xml", images_root=moved,
                                                  class_index=demo_class_index()),
                 tmp_path / "run", WsolConfig(batch_size=4), resume=True, workers=0, progress=False)
    other = make_demo_split(tmp_path / "other", n=24, seed=4, workers=1)
    with pytest.raises(TdvizError, match=r"the annotations \(--boxes\)"):
        run_wsol({"td": model}, xml(other), tmp_path / "run", WsolConfig(batch_size=4), resume=True, workers=0,
                 progress=False)
    with pytest.raises(TdvizError, match="--topk"):
        run_wsol({"td": model}, data, tmp_path / "run", WsolConfig(batch_size=4, topk=3), resume=True, workers=0,
                 progress=False)
    # the same inputs resume, also with another batch size, and end where a clean run ends
    resumed = run_wsol({"td": model}, data, tmp_path / "run", WsolConfig(batch_size=8), resume=True, workers=0,
                       progress=False)
    clean = run_wsol({"td": model}, data, tmp_path / "clean", WsolConfig(batch_size=4), workers=0, progress=False)
    assert resumed["models"] == clean["models"] and resumed["images"] == 24


def test_a_resumed_run_batches_every_image_as_an_uninterrupted_run(split, tmp_path):
    """A model's floats can move in the last bits with the batch an image runs in (PxAP then
    differed in the 8th digit after an interrupted `tdviz wsol`), so a resumed run keeps the
    uninterrupted run's batches, and shards are whole batches of it: the stopped and the resumed
    run's batches together are the clean run's, and the results are equal, PxAP included, resumed
    or merged from shards."""
    model = load_demo_model("demo_resnet_eca")
    data = xml(split)
    masked, _ = read_wsolevaluation(split / "wsol" / "mask", data_root=split)
    by_id = {s.image_id: s for s in masked}
    for s in data.samples:
        s.mask_paths, s.ignore_path = by_id[s.image_id].mask_paths, by_id[s.image_id].ignore_path
    cfg = WsolConfig(batch_size=8)
    clean = WsolRun({"m": model}, data, tmp_path / "clean", cfg)
    clean.run(workers=0, progress=False)
    stopped = WsolRun({"m": model}, data, tmp_path / "run", cfg)
    stopped.run(workers=0, progress=False, stop_after=2)
    resumed = WsolRun({"m": model}, data, tmp_path / "run", cfg, resume=True)
    resumed.run(workers=0, progress=False)

    def sizes(run):
        return [n for _, n in run.timeline]

    assert sizes(stopped) + sizes(resumed) == sizes(clean) == [1, 2, 4, 8, 8, 1]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "pxap" in results["models"]["m"]["1"]
    assert results == json.loads((tmp_path / "clean" / "results.json").read_text())
    # shards are whole batches of the same plan: their merge equals the clean run to the last bit
    for index in (1, 0):
        merged = run_wsol({"m": model}, data, tmp_path / "sharded", cfg, workers=0, progress=False,
                          shard=(index, 2))
    assert merged["shards"] == 2
    assert merged["models"] == results["models"]


def test_a_finished_run_can_be_extended_to_a_larger_limit(split, tmp_path):
    model = load_demo_model("demo_resnet_tdjoint")
    data = xml(split)
    first = run_wsol({"td": model}, data, tmp_path / "run", WsolConfig(limit=8), workers=0, progress=False)
    assert first["images"] == 8
    more = run_wsol({"td": model}, data, tmp_path / "run", WsolConfig(limit=20), resume=True, workers=0,
                    progress=False)
    clean = run_wsol({"td": model}, data, tmp_path / "clean", WsolConfig(limit=20), workers=0, progress=False)
    assert more["images"] == 20 and more["models"] == clean["models"]
    with pytest.raises(TdvizError, match="--limit"):
        run_wsol({"td": model}, data, tmp_path / "run", WsolConfig(limit=4), resume=True, workers=0, progress=False)


def test_finished_work_is_never_deleted(split, tmp_path):
    out = tmp_path / "run"
    res = cli(*wsol_args(split, out, "--model", "demo_resnet", "--limit", "8"))
    assert res.returncode == 0, res.stderr
    records = (out / "records.jsonl").read_text()
    assert records.count("\n") == 8
    again = cli(*wsol_args(split, out, "--model", "demo_resnet", "--limit", "8"))  # no --resume: refused
    assert again.returncode == 1 and "--resume" in again.stderr and "--overwrite" in again.stderr
    (out / "state.json").rename(tmp_path / "state.json")
    lost = cli(*wsol_args(split, out, "--model", "demo_resnet", "--limit", "8", "--resume"))
    assert lost.returncode == 1 and "state.json is missing" in lost.stderr and "Traceback" not in lost.stderr
    assert (out / "records.jsonl").read_text() == records
    (out / "state.json").write_text('{"version": 3, "identity": {')
    broken = cli(*wsol_args(split, out, "--model", "demo_resnet", "--limit", "8", "--resume"))
    assert broken.returncode == 1 and "damaged" in broken.stderr and "Traceback" not in broken.stderr
    assert (out / "records.jsonl").read_text() == records
    replaced = cli(*wsol_args(split, out, "--model", "demo_resnet", "--limit", "4", "--overwrite"))
    assert replaced.returncode == 0 and (out / "records.jsonl").read_text().count("\n") == 4


def test_a_second_run_into_the_same_folder_is_refused(split, tmp_path):
    out = tmp_path / "run"
    with OutputLock(out):  # a run holding the folder (the lock is the kernel's flock)
        res = cli(*wsol_args(split, out, "--model", "demo_resnet", "--limit", "4"))
    assert res.returncode == 1 and "Another tdviz wsol is writing" in res.stderr
    assert not (out / "records.jsonl").exists()
    res = cli(*wsol_args(split, out, "--model", "demo_resnet", "--limit", "4"))
    assert res.returncode == 0, res.stderr


def test_mask_only_metadata_reports_only_what_it_measures(split, tmp_path):
    data = load_wsol_dataset(split / "wsol" / "mask")
    assert len(data) == 24 and all(len(s.boxes) == 0 and s.mask_paths for s in data.samples)
    res = run_wsol({"td": load_demo_model("demo_resnet_tdjoint")}, data, tmp_path / "m", WsolConfig(batch_size=8),
                   workers=0, progress=False)
    row = res["models"]["td"]["2"]
    assert row["n"] == 24 and row["n_masks"] == 24 and 0 < row["pxap"] <= 100
    for absent in ("top1_loc", "top5_loc", "gt_known_loc", "maxboxacc_v2", "maxboxacc", "n_boxes"):
        assert absent not in row, absent
    header, first = (tmp_path / "m" / "results.csv").read_text().splitlines()[:2]
    cells = dict(zip(header.split(","), first.split(",")))
    assert cells["top1_loc"] == "" and cells["maxboxacc_v2"] == "" and cells["pxap"] != ""
    res = cli("wsol", "--model", "demo_resnet_tdjoint", "--data", split, "--boxes", split / "wsol" / "mask",
              "--workers", "0", "--box-workers", "0", "--out", tmp_path / "cli")
    assert res.returncode == 0, res.stderr
    assert "0.00" not in res.stdout and " - " in res.stdout


def test_saved_maps_are_float32_and_reproduce_results(split, tmp_path):
    data = xml(split)
    masked, _ = read_wsolevaluation(split / "wsol" / "mask", data_root=split)
    by_id = {s.image_id: s for s in masked}
    for s in data.samples:
        s.mask_paths, s.ignore_path = by_id[s.image_id].mask_paths, by_id[s.image_id].ignore_path
    models = {"td": load_demo_model("demo_resnet_tdjoint"), "se": load_demo_model("demo_resnet_se")}
    res = run_wsol(models, data, tmp_path / "run", WsolConfig(batch_size=8), workers=0, progress=False,
                   save_maps=tmp_path / "maps")
    files = sorted((tmp_path / "maps" / "td").glob("*.npz"))
    assert len(files) == 24
    with np.load(files[0]) as f:
        assert f["cam_raw"].dtype == np.float32 and f["cam_raw"].shape == (2, 6, 7, 7)
        assert f["wsol_raw"].dtype == np.float32 and f["cam_boxes"].shape == (2, 6, 4)
        assert json.loads(str(f["meta"]))["image_id"] == files[0].stem
    again = recompute_results(tmp_path / "maps", data, ["td", "se"])
    assert again["models"] == res["models"] and again["images"] == 24


def test_labels_outside_the_models_classes_skip_those_images(split, tmp_path):
    data = xml(split)
    data.samples[5].label = 15
    res = run_wsol({"td": load_demo_model("demo_resnet_tdjoint")}, data, tmp_path / "run", WsolConfig(batch_size=8),
                   workers=0, progress=False)
    assert res["images"] == 23 and res["models"]["td"]["2"]["n"] == 23
    assert any("label 15 is outside the 10 classes" in p for p in res["skipped"])
    for s in data.samples:
        s.label = 12
    with pytest.raises(TdvizError, match="No image's label fits"):
        run_wsol({"td": load_demo_model("demo_resnet_tdjoint")}, data, tmp_path / "none", WsolConfig(), workers=0,
                 progress=False)


def _children(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_exit_when_the_run_is_killed(split, tmp_path):
    out = tmp_path / "run"
    args = ["wsol", "--data", split / "images", "--boxes", split / "boxes_xml", "--model", "demo_resnet",
            "--workers", "1", "--box-workers", "2", "--batch-size", "2", "--out", out]
    proc = subprocess.Popen([sys.executable, "-m", "tdviz", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "records.jsonl").exists()
                                          and (out / "records.jsonl").read_text().count("\n") >= 2):
        time.sleep(0.05)
    kids = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(kids) >= 2, "the run's workers were not seen"
    deadline = time.time() + 5
    while time.time() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.1)
    assert not [k for k in kids if _alive(k)], "workers outlived the killed run"
    resumed = cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
