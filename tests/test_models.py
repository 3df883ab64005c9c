"""The zoo: reference layouts load strict, Table 1 parameter counts, registry errors, timm names."""

import pytest
import timm
import torch
from conftest import layout_files, load_layout

import tdviz
from tdviz.complexity import count_parameters

# layout file -> (registry name, overrides)
LAYOUT_MODELS = {
    "r18_joint_t2_m2": ("resnet18_tdjoint", {}),
    "r18_joint_t3_m1": ("resnet18_tdjoint", {"steps": 3, "m": 1}),
    "r34_joint_t2_m2": ("resnet34_tdjoint", {}),
    "r50_joint_t2_m1": ("resnet50_tdjoint", {}),
    "r50_top_t2_m1": ("resnet50_tdtop_m1", {}),
    "r50_top_t2_m3": ("resnet50_tdtop", {}),
    "r101_joint_t2_m1": ("resnet101_tdjoint", {}),
}


def test_every_reference_layout_is_covered():
    names = {p.name.removesuffix(".layout.json") for p in layout_files()}
    assert names == set(LAYOUT_MODELS)


@pytest.mark.parametrize("path", layout_files(), ids=lambda p: p.name.split(".")[0])
def test_layout_loads_strict(path):
    layout = load_layout(path)
    name, overrides = LAYOUT_MODELS[layout["name"]]
    model = tdviz.create_model(name, **overrides)
    dtypes = {"torch.float32": torch.float32, "torch.int64": torch.int64}
    state = {k: torch.randn(shape).to(dtypes[dt]) if dt == "torch.float32" else torch.tensor(7)
             for k, shape, dt in layout["state_dict"]}
    model.load_state_dict(state, strict=True)
    # same keys in the same order, and the values really went in
    assert list(model.state_dict()) == [k for k, _, _ in layout["state_dict"]]
    key = next(k for k in state if k.endswith("RA_block.Ug_mlp.0.weight"))
    assert torch.equal(model.state_dict()[key], state[key])
    # the TD blocks the authors' model holds are the ones tdviz built
    td_blocks = sorted(n.removesuffix(".RA_block") for n, _ in model.named_modules() if n.endswith("RA_block"))
    assert td_blocks == sorted(b["block"] for b in layout["td_blocks"])


TABLE1 = {
    "resnet50": 25.56, "resnet50_se": 28.07, "resnet50_cbam": 28.07, "resnet50_eca": 25.56, "resnet50_fca": 28.07,
    "resnet50_tdjoint": 27.65, "resnet50_tdtop_m1": 27.06, "resnet101": 44.55, "resnet101_tdjoint": 46.75,
    "resnet101_tdjoint_l4": 45.94,
    # the authors' code gives 27.79 M for TDtop(t2, m3); the paper prints 27.66 M
    "resnet50_tdtop": 27.79,
}


@pytest.mark.parametrize("name", sorted(TABLE1))
def test_table1_parameter_counts(name):
    with torch.device("meta"):
        model = tdviz.create_model(name)
    assert round(count_parameters(model) / 1e6, 2) == TABLE1[name]


def test_unknown_name_lists_nearest():
    with pytest.raises(tdviz.TdvizError, match="Nearest names: resnet50_tdjoint"):
        tdviz.create_model("resnet50_tdjiont")


def test_overrides_and_their_errors():
    with torch.device("meta"):
        model = tdviz.create_model("resnet50_tdjoint", steps=3, m=2, attention="top", num_classes=10)
    assert model.fc.out_features == 10 and model.num_steps == 3
    assert hasattr(model.layer4[0], "bn2_2") and not hasattr(model.layer4[0], "bn1_1")
    with pytest.raises(tdviz.TdvizError, match="has no TD blocks"):
        tdviz.create_model("resnet50", steps=2)
    with pytest.raises(tdviz.TdvizError, match="does not take"):
        tdviz.create_model("resnet50", depth=3)
    with pytest.raises(ValueError, match="feedback distance 0..2"):
        tdviz.create_model("resnet18_tdjoint", m=3)


def test_timm_knows_tdviz_names():
    model = timm.create_model("resnet50_tdjoint", num_classes=7)
    assert model.fc.out_features == 7 and model.num_steps == 2
    with pytest.raises(ValueError, match="never downloads"):
        timm.create_model("resnet50_tdjoint", pretrained=True)


def test_describe_models_reports_cost():
    rows = {r.name: r for r in tdviz.describe_models(["resnet50", "resnet50_tdjoint"])}
    assert rows["resnet50"].gmacs == pytest.approx(4.09, abs=0.01)
    assert rows["resnet50_tdjoint"].gmacs > rows["resnet50"].gmacs + 0.3
    assert rows["resnet50_tdjoint"].steps == 2 and rows["resnet50"].steps == 1


def test_timm_registration_when_timm_is_imported_after_tdviz():
    import subprocess
    import sys

    code = ("import sys, tdviz; assert 'timm' not in sys.modules; import timm; "
            "m = timm.create_model('resnet50_tdtop', num_classes=3); print(m.fc.out_features, m.num_steps)")
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["3", "2"]
