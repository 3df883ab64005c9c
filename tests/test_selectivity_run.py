"""`tdviz selectivity` on real demo images and the shipped models."""

import json

from conftest import run_cli

from tdviz.classify import ImageFolderDataset
from tdviz.demo import make_demo_split
from tdviz.images import Preprocess
from tdviz.models.demo_zoo import load_demo_model
from tdviz.selectivity import run_selectivity


def test_run_selectivity_per_model_layer_step(tmp_path):
    split = make_demo_split(tmp_path / "split", n=20, seed=1, workers=1)
    bad = split / "images" / "n00000000" / "broken.png"
    bad.write_bytes(b"not a png")
    data = ImageFolderDataset(split / "images", Preprocess(mode="resize"))
    models = {"plain": load_demo_model("demo_resnet"), "td": load_demo_model("demo_resnet_tdjoint")}
    results, skipped = run_selectivity(models, data, ["layer4.1", "layer3.1"], batch_size=8, workers=0,
                                       progress=False)
    assert len(skipped) == 1 and "broken.png" in skipped[0]
    assert sorted(results) == sorted([("plain", "layer4.1", 1), ("plain", "layer3.1", 1), ("td", "layer4.1", 1),
                                      ("td", "layer4.1", 2), ("td", "layer3.1", 1), ("td", "layer3.1", 2)])
    r = results[("td", "layer4.1", 2)]
    assert r.si.shape == (512,) and 0 <= r.summaries["si"][0] <= 1
    assert len(r.values("gini")) == 20 and len(r.values("focus")) == 20


def test_selectivity_cli(tmp_path):
    res = run_cli("selectivity", "--limit", "20", "--model", "demo_resnet_tdtop", "--out", tmp_path / "out", "--json",
                  "--workers", "0", env={"TDVIZ_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    assert payload["images"] == 20 and [r["step"] for r in payload["results"]] == [1, 2]
    assert (tmp_path / "out" / "selectivity.png").stat().st_size > 1000
