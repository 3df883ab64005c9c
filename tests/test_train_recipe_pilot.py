"""The recipe pilot: variants parsed or refused in one line, and a tiny run that trains each
variant its own number of steps on the same canvases and reports them."""
import json
import sys

import pytest

from benchmarks import train_recipe_pilot as pilot
from tdviz.demo.fashion import PACKAGED_DIR


def test_variant_keys_and_refusals():
    v = pilot.parse_variant("fast:batch=128,lr=4e-3,frac=0,draws=1e5,model=demo_resnet_tdtop")
    assert (v.name, v.batch, v.lr, v.frac, v.draws, v.model, v.low) == ("fast", 128, 4e-3, 0.0, 100000,
                                                                         "demo_resnet_tdtop", 160)
    assert pilot.parse_variant("plain") == pilot.Variant("plain")
    for bad, says in ((":lr=1", "name"), ("a:speed=2", "not key=value"), ("a:lr=fast", "must be a number"),
                      ("a:lr=0", "lr positive"), ("a:frac=2", "frac in"), ("a:model=resnet50", "not a demo model"),
                      ("a:batch=64,draws=8", "at least one batch")):
        with pytest.raises(ValueError, match=says):
            pilot.parse_variant(bad)


def _run(monkeypatch, tmp_path, *extra):
    fashion = tmp_path / "fashion"  # real Fashion-MNIST files (the packaged test set) in the train names
    fashion.mkdir(exist_ok=True)
    for kind in ("images-idx3", "labels-idx1"):
        link = fashion / f"train-{kind}-ubyte.gz"
        if not link.exists():
            link.symlink_to(PACKAGED_DIR / f"t10k-{kind}-ubyte.gz")
    monkeypatch.setattr(sys, "argv", ["train_recipe_pilot.py", "--fashion-dir", str(fashion), "--samples", "16",
                                      "--render-batch", "8", "--reuse", "1", "--pool", "2", "--val", "4",
                                      "--workers", "0", "--out", str(tmp_path / "out"), *extra])
    pilot.main()


def test_a_tiny_pilot_trains_every_variant_and_reports_it(tmp_path, monkeypatch, capsys):
    _run(monkeypatch, tmp_path, "--variant", "whole:batch=8,warmup=8", "--variant", "half:batch=4,draws=8,low=112")
    result = json.loads((tmp_path / "out" / "pilot.json").read_text())
    whole, half = result["variants"]["whole"], result["variants"]["half"]
    assert (whole["steps"], whole["steps_done"]) == (2, 2) and (half["steps"], half["steps_done"]) == (2, 2)
    assert 0 <= whole["top1"] <= 100 and result["val_images"] == 4
    assert "eval " in (tmp_path / "out" / "half.log").read_text()
    with pytest.raises(SystemExit, match="does not divide --render-batch 8"):
        _run(monkeypatch, tmp_path, "--variant", "odd:batch=3")
    with pytest.raises(SystemExit, match="its own name"):
        _run(monkeypatch, tmp_path, "--variant", "a", "--variant", "a")


def test_names_that_cannot_name_a_log_and_numbers_that_cannot_train_are_refused(tmp_path, monkeypatch):
    for bad, says in (("../a:lr=1e-3", "give a name first"), ("a:lr=nan", "lr positive and finite"),
                      ("a:lr=inf", "lr positive and finite")):
        with pytest.raises(ValueError, match=says):
            pilot.parse_variant(bad)
    with pytest.raises(SystemExit, match="less than one batch"):
        _run(monkeypatch, tmp_path, "--variant", "big:batch=8", "--samples", "4")
    (tmp_path / "taken").write_text("")
    with pytest.raises(SystemExit, match="cannot write to --out"):
        _run(monkeypatch, tmp_path, "--variant", "a:batch=8", "--out", str(tmp_path / "taken" / "out"))
