"""ConvNeXt and MobileNetV3 (plain and TD): library parity, TD placement, step semantics, registry."""

import pytest
import timm
import torch
import torchvision
from torch import nn

import tdviz.models.convnext  # registers convnext_tiny*
import tdviz.models.mobilenetv3  # noqa: F401  (registers mobilenetv3_large*)
from tdviz.models.convnext import ConvNeXt, convert_state_dict
from tdviz.models.mobilenetv3 import MobileNetV3
from tdviz.models.registry import create_model
from tdviz.models.resnet import TDConfig
from tdviz.models.td import record_td_passes

SMALL = {"depths": (1, 1, 2, 2), "dims": (16, 32, 64, 128)}
TD_KEYS = ("RA_block.", "_bn_")


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def stepped(model, x, steps):
    return model.forward_head(model.forward_stage(model.forward_trunk(x), steps=steps))


def is_td_key(key: str) -> bool:
    return any(t in key for t in TD_KEYS)


def randomize_norms(model: nn.Module) -> None:
    """Non-trivial BN statistics / affine params, so that a wrong BN per step would show."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (nn.BatchNorm2d, nn.LayerNorm)):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)


# ---------------------------------------------------------------- ConvNeXt


def test_convnext_tiny_matches_torchvision_and_timm():
    model = create_model("convnext_tiny").eval()
    tv = torchvision.models.convnext_tiny(weights=None).eval()
    tm = timm.create_model("convnext_tiny", pretrained=False).eval()
    assert n_params(model) == n_params(tv) == n_params(tm) == 28_589_128
    # FB's original naming (= the authors' tdconvnext.py plain naming)
    assert {k.split(".")[0] for k in model.state_dict()} == {"downsample_layers", "stages", "norm", "head"}
    assert "stages.2.8.pwconv1.weight" in model.state_dict() and "stages.3.2.gamma" in model.state_dict()
    x = torch.randn(1, 3, 64, 64)
    for ref in (tv, tm):
        model.load_state_dict(convert_state_dict(ref.state_dict()), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(model(x), ref(x), rtol=1e-5, atol=1e-6)


def test_convnext_td_keys_and_channels():
    model = create_model("convnext_tiny_tdjoint")
    assert model.num_steps == 2
    td = sorted(n.removesuffix(".RA_block") for n, _ in model.named_modules() if n.endswith("RA_block"))
    assert td == sorted([f"stages.2.{i}" for i in range(9)] + [f"stages.3.{i}" for i in range(3)])
    sd = model.state_dict()
    # authors' names/shapes, m=1: bottom = GELU output (4 x dim), rd = dim // 16; no per-step norms
    assert sd["stages.3.0.RA_block.Ug_top_mlp.0.weight"].shape == (48, 768, 1, 1)
    assert sd["stages.3.0.RA_block.Ug_bottom_mlp.0.weight"].shape == (48, 3072, 1, 1)
    assert sd["stages.3.0.RA_block.Ug_mlp.0.weight"].shape == (3072, 96, 1, 1)
    assert not [k for k in sd if "_bn_" in k or "norm_" in k]
    assert list(sd)[-4:] == ["norm.weight", "norm.bias", "head.weight", "head.bias"]
    m2 = create_model("convnext_tiny_tdjoint", m=2, attention="top")
    assert m2.state_dict()["stages.2.0.RA_block.Ug_mlp.2.weight"].shape == (384, 24, 1, 1)


@pytest.mark.parametrize("m", [1, 2])
def test_convnext_td_one_step_equals_plain(m):
    plain = ConvNeXt(num_classes=10, layer_scale_init_value=1.0, **SMALL).eval()
    td = ConvNeXt(num_classes=10, td=TDConfig(1, m, "joint"), layer_scale_init_value=1.0, **SMALL).eval()
    result = td.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(".RA_block." in k for k in result.missing_keys)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(td(x), plain(x))


@pytest.mark.parametrize("m", [1, 2])
def test_convnext_steps(m):
    model = ConvNeXt(num_classes=10, td=TDConfig(3, m, "joint"), layer_scale_init_value=1.0, **SMALL).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), record_td_passes() as passes:
        out = model(x)
        assert torch.equal(stepped(model, x, 3), out)
        one = stepped(model, x, 1)
    assert (one - out).abs().max() > 1e-3
    # bottom map: GELU output (4 x dim) for m=1, LayerNorm output (dim) for m=2, at the block's resolution
    rec = passes[model.stages[3][0].RA_block]
    assert [p.step for p in rec[:2]] == [1, 2]
    assert rec[0].searchlight.shape == (2, 128 * (4 if m == 1 else 1))
    assert rec[0].spatial.shape == (2, 2, 2)


def test_convnext_stage_layout_and_feature_layer():
    model = create_model("convnext_tiny_tdjoint", num_classes=10).eval()
    assert model.feature_layer == "stages.3.2"
    blocks = model.stage_blocks()
    assert blocks[0] is model.downsample_layers[3] and blocks[1:] == list(model.stages[3])
    feats = {}
    layer = model.get_submodule(model.feature_layer)
    handle = layer.register_forward_hook(lambda mod, inp, out: feats.setdefault("x", out))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
    handle.remove()
    assert out.shape == (1, 10)
    assert feats["x"].shape == (1, 768, 2, 2)
    with torch.no_grad():
        assert torch.equal(model.forward_head(feats["x"]), out)


def test_convnext_registry_overrides_and_errors():
    model = create_model("convnext_tiny_tdjoint", steps=3, num_classes=10)
    assert model.num_steps == 3
    assert all(b.td_steps == 3 and b.td_m == 1 for s in (2, 3) for b in model.stages[s])
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    for bad in (0, 3, 4):
        with pytest.raises(ValueError, match="m="):
            create_model("convnext_tiny_tdjoint", m=bad)
    with pytest.raises(ValueError):
        model.stages[3][0](torch.randn(1, 768, 2, 2), steps=4)
    with pytest.raises(ValueError):
        create_model("convnext_tiny", steps=2)


def test_convnext_drop_path_and_small_variant():
    model = create_model("convnext_tiny", drop_path_rate=0.1, **SMALL, num_classes=10)
    rates = [b.drop_path.p for s in model.stages for b in s if not isinstance(b.drop_path, nn.Identity)]
    assert rates and max(rates) == pytest.approx(0.1)
    model.train()
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)


# ---------------------------------------------------------------- MobileNetV3


def test_mobilenetv3_matches_torchvision():
    model = create_model("mobilenetv3_large").eval()
    tv = torchvision.models.mobilenet_v3_large(weights=None).eval()
    assert n_params(model) == n_params(tv) == 5_483_032
    model.load_state_dict(tv.state_dict(), strict=True)
    assert list(model.state_dict()) == list(tv.state_dict())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model(x), tv(x))
    assert model.feature_layer == "features.16"
    feats = []
    handle = model.get_submodule(model.feature_layer).register_forward_hook(lambda mod, i, o: feats.append(o))
    with torch.no_grad():
        out = model(x)
    handle.remove()
    assert len(feats) == 1 and feats[0].shape == (2, 960, 3, 3)
    with torch.no_grad():
        assert torch.equal(model.forward_head(feats[0]), out)


def _plain_without_last_se(num_classes=10):
    plain = MobileNetV3(num_classes=num_classes)
    for i in (13, 14, 15):
        plain.features[i].block[2] = nn.Identity()
    return plain


@pytest.mark.parametrize("m", [1, 2, 3])
def test_mobilenetv3_td_one_step_equals_plain_without_se(m):
    tv = torchvision.models.mobilenet_v3_large(weights=None, num_classes=10)
    plain = _plain_without_last_se()
    result = plain.load_state_dict(tv.state_dict(), strict=False)
    assert result.missing_keys == []
    assert sorted({k.rsplit(".", 2)[0] for k in result.unexpected_keys}) == [
        f"features.{i}.block.2" for i in (13, 14, 15)]
    randomize_norms(plain)
    td = MobileNetV3(num_classes=10, td=TDConfig(1, m, "joint"))
    result = td.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(".RA_block." in k for k in result.missing_keys)
    plain.eval(), td.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(td(x), plain(x))


@pytest.mark.parametrize("m,bottom", [(1, 960), (2, 960), (3, 160), (0, 160)])
def test_mobilenetv3_td_layout_and_steps(m, bottom):
    model = create_model("mobilenetv3_large_tdjoint", m=m, num_classes=10)
    randomize_norms(model)
    model.eval()
    td = [n.removesuffix(".RA_block") for n, _ in model.named_modules() if n.endswith("RA_block")]
    assert td == ["features.13", "features.14", "features.15"]
    # SE gone, projection still at block.3, per-step BN copies of the re-run layers
    sd = model.state_dict()
    assert not [k for k in sd if k.split(".")[1] in ("13", "14", "15") and ".block.2." in k]
    assert "features.12.block.2.fc1.weight" in sd
    assert "features.15.block.3.1.weight" in sd
    per_step = {k.split(".")[2] for k in sd if k.startswith("features.14.") and "_bn_" in k}
    assert per_step == {1: {"project_bn_1"}, 2: {"dw_bn_1", "project_bn_1"},
                        3: {"expand_bn_1", "dw_bn_1", "project_bn_1"}, 0: set()}[m]
    assert sd["features.14.RA_block.Ug_top_mlp.0.weight"].shape == (10, 160, 1, 1)
    assert sd["features.14.RA_block.Ug_bottom_mlp.0.weight"].shape == (10, bottom, 1, 1)
    assert model.stage_blocks() == list(model.features[13:])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), record_td_passes() as passes:
        out = model(x)
        assert torch.equal(stepped(model, x, 2), out)
        one = stepped(model, x, 1)
    assert (one - out).abs().max() > 1e-4
    assert passes[model.features[14].RA_block][0].searchlight.shape == (2, bottom)


def test_mobilenetv3_registry():
    model = create_model("mobilenetv3_large_tdjoint")
    assert model.num_steps == 2 and all(model.features[i].td_m == 1 for i in (13, 14, 15))
    # the paper: TD MobileNetV3 has fewer parameters than the original (SE removed in three blocks)
    assert n_params(model) < n_params(create_model("mobilenetv3_large"))
    for bad in (4, -1):
        with pytest.raises(ValueError, match="m="):
            create_model("mobilenetv3_large_tdjoint", m=bad)
    model = create_model("mobilenetv3_large_tdjoint", steps=3, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    assert model.num_steps == 3


@pytest.mark.parametrize("name,kw", [("mobilenetv3_large_tdjoint", {"m": 2}), ("mobilenetv3_large_tdjoint", {"m": 3}),
                                     ("convnext_tiny_tdjoint", {**SMALL, "drop_path_rate": 0.1})])
def test_td_models_train_backward(name, kw):
    model = create_model(name, num_classes=10, **kw).train()
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    grads = [p.grad for n, p in model.named_parameters() if ".RA_block." in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
