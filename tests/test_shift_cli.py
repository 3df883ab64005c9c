"""`tdviz shift` on a COCO-annotated set with two objects per image."""

import json
import subprocess
import sys

from tdviz.demo import make_demo_split


def test_shift_cli_on_coco(tmp_path):
    split = make_demo_split(tmp_path / "split", n=10, seed=2, two_objects=True, workers=1)
    res = subprocess.run([sys.executable, "-m", "tdviz_cli.main", "shift", "--boxes", str(split / "instances_val.json"),
                          "--model", "demo_resnet_tdtop", "--model", "demo_resnet", "--out", str(tmp_path / "out"),
                          "--json"], check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    td, plain = payload["models"]["demo_resnet_tdtop"], payload["models"]["demo_resnet"]
    assert td["n_images"] == plain["n_images"] == 10
    assert len(td["localized_per_step"]) == 2 and len(plain["localized_per_step"]) == 1
    assert plain["frac_changed"] == 0 and 0 <= td["frac_unique_maps"] <= 1
    assert json.loads((tmp_path / "out" / "shift.json").read_text()) == payload
