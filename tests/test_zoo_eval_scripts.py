"""The zoo's seed measurements, end to end on real weights and canvases: every run of a weights
folder measured by benchmarks/eval_demo_zoo_seeds.py, then read by zoo_seed_tables.py."""
import json
import shutil
import sys

import pytest

from benchmarks import eval_demo_zoo_seeds, loc_by_object_size, zoo_seed_tables
from tdviz.demo import make_demo_split
from tdviz.models.demo_zoo import demo_weights_path


def _weights(folder, runs):
    folder.mkdir()
    for model, seed in runs:
        shutil.copy(demo_weights_path(model), folder / f"{model}_seed{seed}.safetensors")


def test_every_run_measured_and_tabled(tmp_path, monkeypatch, capsys):
    runs = [("demo_resnet", 0), ("demo_resnet", 1), ("demo_resnet_tdtop", 0)]
    _weights(tmp_path / "w", runs)
    out = tmp_path / "eval"
    monkeypatch.setattr(sys, "argv", ["eval_demo_zoo_seeds.py", "--weights", str(tmp_path / "w"), "--workers", "0",
                                      "--wsol-images", "12", "--cross-images", "10", "--shift-images", "4",
                                      "--selectivity-images", "10", "--out", str(out)])
    eval_demo_zoo_seeds.main()
    names = {f"{m}_seed{s}" for m, s in runs}
    wsol = json.loads((out / "wsol.json").read_text())
    cross = json.loads((out / "cross.json").read_text())
    shift = json.loads((out / "shift.json").read_text())
    sel = json.loads((out / "selectivity.json").read_text())
    assert set(wsol["models"]) == set(cross["models"]) == set(shift["models"]) == names
    assert wsol["images"] == 12 and cross["images"] == 10
    assert set(wsol["models"]["demo_resnet_tdtop_seed0"]) == {"1", "2", "mc"}
    assert "pxap" in wsol["models"]["demo_resnet_seed0"]["1"]  # both protocols measured
    assert {k.split("|")[0] for k in sel} == names and "demo_resnet_tdtop_seed0|layer4.1|2" in sel
    # same-weights seeds give the same numbers: the sd over them is 0
    assert wsol["models"]["demo_resnet_seed0"] == wsol["models"]["demo_resnet_seed1"]

    train = {"results": {n: {"top1_per_step": [50.0] * (2 if "td" in n else 1), "top1_most_confident": 50.0,
                             "val_images": 5000} for n in names}}
    text = zoo_seed_tables.cross(cross, train)
    other = cross["models"]["demo_resnet_seed0"]["1"]["top1_cls"]
    assert f"| demo_resnet | 50.0 ± 0.0 | {zoo_seed_tables.ms([other, other])} |" in text
    assert "demo_resnet_tdtop" in zoo_seed_tables.wsol(wsol, "WSOL")
    assert "layer4.1" in zoo_seed_tables.selectivity(sel)
    del train["results"]["demo_resnet_seed1"]
    with pytest.raises(SystemExit, match="--train lacks"):
        zoo_seed_tables.cross(cross, train)

    # GT-known loc by object size, read back from the same run's records: the groups add up to
    # every score, and pooled they give the run's own GT-known loc
    boxes = make_demo_split(n=1000, seed=0) / "LOC_val_solution.csv"
    monkeypatch.setattr(sys, "argv", ["loc_by_object_size.py", "--run", str(out / "wsol_run"), "--boxes", str(boxes),
                                      "--out", str(tmp_path / "size.json")])
    loc_by_object_size.main()
    size = json.loads((tmp_path / "size.json").read_text())["models"]
    assert set(size) == {"demo_resnet", "demo_resnet_tdtop"}
    assert sum(g["scores"] for g in size["demo_resnet"]["groups"]) == size["demo_resnet"]["all"]["scores"] == 24
    assert size["demo_resnet_tdtop"]["all"]["gt_known_loc"] == wsol["models"]["demo_resnet_tdtop_seed0"]["2"]["gt_known_loc"]
    assert size["demo_resnet"]["all"]["gt_known_loc"] == wsol["models"]["demo_resnet_seed0"]["1"]["gt_known_loc"]
    # a cam-only run (the independent renderer's) has no best-threshold bound: absent, never 0
    monkeypatch.setattr(sys, "argv", ["loc_by_object_size.py", "--run", str(out / "cross_run"), "--boxes",
                                      str(out / "independent" / "instances.json"), "--out", str(tmp_path / "c.json")])
    loc_by_object_size.main()
    cam_only = json.loads((tmp_path / "c.json").read_text())["models"]["demo_resnet"]["all"]
    assert cam_only["best_threshold_bound"] is None and cam_only["scores"] == 20
    monkeypatch.setattr(sys, "argv", ["loc_by_object_size.py", "--run", str(out / "cross_run"), "--boxes", str(boxes)])
    with pytest.raises(SystemExit, match="pass the annotations the run was scored on"):
        loc_by_object_size.main()  # the demo split's boxes name none of the renderer's images
    monkeypatch.setattr(sys, "argv", ["loc_by_object_size.py", "--run", str(out / "wsol_run"), "--boxes", str(boxes)])
    records = out / "wsol_run" / "records.jsonl"
    lines = records.read_text().splitlines()
    records.write_text("\n".join(lines) + "\n" + lines[-1][:40])  # a killed run's cut-off last line
    loc_by_object_size.main()  # skipped and reported; the other images are still measured
    assert "skipped: 1 line(s)" in capsys.readouterr().err
    records.write_text("{not json\n")
    with pytest.raises(SystemExit, match="is not JSON"):
        loc_by_object_size.main()


def test_a_misnamed_weights_file_is_one_clear_error(tmp_path):
    _weights(tmp_path / "w", [("demo_resnet", 0)])
    (tmp_path / "w" / "demo_resnet_seed0.safetensors").rename(tmp_path / "w" / "resnet_x_seed0.safetensors")
    with pytest.raises(SystemExit, match="is not named <demo model>_seed<k>"):
        eval_demo_zoo_seeds.load_runs(tmp_path / "w", "cpu")
    with pytest.raises(SystemExit, match="holds no"):
        eval_demo_zoo_seeds.load_runs(tmp_path, "cpu")


def test_a_damaged_or_foreign_run_is_reported_and_left_out(tmp_path, capsys):
    _weights(tmp_path / "w", [("demo_resnet", 0), ("demo_resnet_se", 0)])
    whole = (tmp_path / "w" / "demo_resnet_se_seed0.safetensors").read_bytes()
    (tmp_path / "w" / "demo_resnet_se_seed0.safetensors").write_bytes(whole[:1000])  # cut short
    shutil.copy(demo_weights_path("demo_resnet_se"), tmp_path / "w" / "demo_resnet_eca_seed0.safetensors")
    runs = eval_demo_zoo_seeds.load_runs(tmp_path / "w", "cpu")
    assert list(runs) == ["demo_resnet_seed0"]
    err = capsys.readouterr().err
    assert "skipped demo_resnet_se_seed0.safetensors" in err and "skipped demo_resnet_eca_seed0.safetensors" in err
    assert "try demo_resnet_se" in err  # the mismatch says what the file is


def test_tables_from_a_wrong_or_missing_file_are_one_clear_line(tmp_path, monkeypatch):
    wrong = tmp_path / "wsol.json"
    wrong.write_text(json.dumps({"models": {}, "images": 0}))
    for argv, says in ((["--train", str(tmp_path / "missing.json")], "cannot be read"),
                       (["--train", str(wrong)], "is not what --train takes")):
        monkeypatch.setattr(sys, "argv", ["zoo_seed_tables.py", *argv])
        with pytest.raises(SystemExit, match=says):
            zoo_seed_tables.main()
