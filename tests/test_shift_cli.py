"""`tdviz shift` on a COCO-annotated set with two objects per image."""

import json
from pathlib import Path

from conftest import run_cli

from tdviz.demo import make_demo_split


def test_shift_cli_on_coco(tmp_path):
    split = make_demo_split(tmp_path / "split", n=10, seed=2, two_objects=True, workers=1)
    res = run_cli("shift", "--boxes", split / "instances_val.json", "--model", "demo_resnet_tdtop", "--model", "demo_resnet",
                  "--out", tmp_path / "out", "--json")
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    td, plain = payload["models"]["demo_resnet_tdtop"], payload["models"]["demo_resnet"]
    assert td["n_images"] == plain["n_images"] == 10
    assert len(td["localized_per_step"]) == 2 and len(plain["localized_per_step"]) == 1
    assert plain["frac_changed"] == 0 and 0 <= td["frac_unique_maps"] <= 1
    files = payload.pop("files")
    assert json.loads((tmp_path / "out" / "shift.json").read_text()) == payload
    assert [Path(f).name for f in files] == ["shift_images.csv", "shift.png", "shift.pdf"]
