"""Checkpoint loading: the authors' training-script files, safetensors, refusals and diagnoses."""

import argparse
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

import tdviz
from tdviz.checkpoints import CheckpointError, describe_state_dict, read_state_dict


@pytest.fixture(scope="module")
def r18td():
    torch.manual_seed(0)
    return tdviz.create_model("resnet18_tdjoint")


def _authors_file(path, model, ema_model=None):
    """Saved the way the authors' timm-based training script saves (DataParallel prefixes included)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    ckpt = {
        "epoch": 99,
        "arch": "tdresnet18",
        "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "args": argparse.Namespace(model="tdresnet18", lr=0.1, time_steps=2, m=2, batch_size=256, amp=True,
                                   spotlight_gen_technique="joint_top_bottom_concat_attention"),
        "version": 2,
        "metric": 70.1,
    }
    if ema_model is not None:
        ckpt["state_dict_ema"] = {f"module.{k}": v for k, v in ema_model.state_dict().items()}
    torch.save(ckpt, path)


def test_authors_training_checkpoint_loads(tmp_path, r18td):
    src = tdviz.create_model("resnet18_tdjoint")
    ema = tdviz.create_model("resnet18_tdjoint")
    path = tmp_path / "model_best.pth.tar"
    _authors_file(path, src, ema)
    report = tdviz.load_weights(r18td, path)
    assert report.entry == "state_dict"
    assert all(torch.equal(a, b) for a, b in zip(r18td.state_dict().values(), src.state_dict().values()))
    tdviz.load_weights(r18td, path, ema=True)
    assert all(torch.equal(a, b) for a, b in zip(r18td.state_dict().values(), ema.state_dict().values()))


def test_plain_state_dict_and_safetensors(tmp_path):
    import torchvision

    tv = torchvision.models.resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    model = tdviz.create_model("resnet18")
    tdviz.load_weights(model, tmp_path / "tv.pth")
    assert torch.equal(model.conv1.weight, tv.conv1.weight)
    save_file({k: v.contiguous() for k, v in tv.state_dict().items()}, tmp_path / "tv.safetensors")
    model2 = tdviz.create_model("resnet18")
    tdviz.load_weights(model2, tmp_path / "tv.safetensors")
    assert torch.equal(model2.fc.weight, tv.fc.weight)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickle_that_runs_code_is_refused(tmp_path, writer):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"state_dict": {"w": torch.zeros(1)}, "hook": _Evil(sentinel)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError, match="refuses to unpickle"):
        read_state_dict(path)
    assert not sentinel.exists()


def test_wrong_checkpoint_gets_a_diagnosis(tmp_path, r18td):
    path = tmp_path / "td.pth"
    torch.save(r18td.state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        tdviz.load_weights(tdviz.create_model("resnet18"), path)
    msg = str(err.value)
    assert "joint attention, m=2, T=2, TD at layer3+layer4" in msg and "try resnet18_tdjoint" in msg
    assert msg.count("\n") == 0

    other = tdviz.create_model("resnet18_tdjoint", steps=3, m=1, num_classes=10)
    torch.save({"state_dict": other.state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"T=3.*try create_model\('resnet18_tdjoint', num_classes=10, steps=3, m=1\)"):
        tdviz.load_weights(r18td, path)


def test_describe_baselines_and_depths():
    with torch.device("meta"):
        for name, text in [("resnet50_cbam", "ResNet50, CBAM attention"), ("resnet101", "ResNet101, no attention"),
                           ("resnet50_tdtop", "ResNet50, top attention, m=3, T=2"),
                           ("resnet101_tdjoint", "TD at layer3 blocks 0,1,2,8,13,18,22+layer4")]:
            shapes = {k: tuple(v.shape) for k, v in tdviz.create_model(name).state_dict().items()}
            assert text in describe_state_dict(shapes), name


def test_unreadable_files(tmp_path, r18td):
    with pytest.raises(CheckpointError, match="does not exist"):
        tdviz.load_weights(r18td, tmp_path / "nope.pth")
    good = tmp_path / "good.pth"
    torch.save(r18td.state_dict(), good)
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        tdviz.load_weights(r18td, bad)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError):
        tdviz.load_weights(r18td, text)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="safetensors"):
        tdviz.load_weights(r18td, tmp_path / "bad.safetensors")


def test_refusal_names_what_was_refused_and_never_advises_weights_only_false(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": _Evil(tmp_path / "pwned")}, path)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert "system" in message and "weights_only" not in message and "will likely succeed" not in message
    assert not (tmp_path / "pwned").exists()


def test_folder_text_and_damaged_files_are_told_apart(tmp_path, r18td):
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        tdviz.load_weights(r18td, tmp_path)
    (tmp_path / "notes.pth").write_text("epoch 1: loss 0.3\n" * 10)
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint") as info:
        tdviz.load_weights(r18td, tmp_path / "notes.pth")
    assert "truncated" not in str(info.value)
    good = tmp_path / "good.pth"
    torch.save(r18td.state_dict(), good)
    (tmp_path / "cut.pth").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        tdviz.load_weights(r18td, tmp_path / "cut.pth")


@pytest.mark.parametrize("damage", ["int", "nan", "inf", "bool", "not a tensor"])
def test_wrong_dtype_nan_inf_and_non_tensors_are_refused_by_name(tmp_path, r18td, damage):
    state = {k: v.clone() for k, v in r18td.state_dict().items()}
    key = "layer1.0.conv1.weight"
    if damage == "int":
        state[key] = state[key].to(torch.int32)
    elif damage == "bool":
        state[key] = state[key] > 0
    elif damage == "not a tensor":
        state[key] = [1.0, 2.0]
    else:
        state[key][0, 0, 0, 0] = float(damage)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        tdviz.load_weights(tdviz.create_model("resnet18_tdjoint"), path)
    fp16 = tmp_path / "half.pth"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in r18td.state_dict().items()}, fp16)
    tdviz.load_weights(tdviz.create_model("resnet18_tdjoint"), fp16)  # another float precision is fine


def test_mismatch_diagnosis_for_layouts_that_are_not_standard_resnets(tmp_path):
    convnext = tmp_path / "convnext.pth"
    torch.save(tdviz.create_model("convnext_tiny").state_dict(), convnext)
    with pytest.raises(CheckpointError, match="non-ResNet model") as info:
        tdviz.load_weights(tdviz.create_model("resnet50"), convnext)
    assert "convnext_tiny" in str(info.value)
    from tdviz.models.demo_zoo import WEIGHTS_DIR

    with pytest.raises(CheckpointError, match="try demo_resnet_tdtop"):
        tdviz.load_weights(tdviz.create_model("resnet50"), WEIGHTS_DIR / "demo_resnet_tdtop.safetensors")


def test_fca_weights_without_their_fixed_dct_filters_load(tmp_path):
    """The shipped fp16 files leave FCA's DCT filter bank out (the architecture fixes it): they load
    through load_weights (so through --weights) and give the shipped model's outputs; a file whose
    filters have another shape is still refused."""
    import torch
    from safetensors.torch import load_file, save_file

    import tdviz
    from tdviz.models.demo_zoo import demo_weights_path, load_demo_model

    path = demo_weights_path("demo_resnet_fca")
    assert not any(k.endswith(".dct_weight") for k in load_file(str(path)))
    model = tdviz.create_model("demo_resnet_fca")
    tdviz.load_weights(model, path)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), load_demo_model("demo_resnet_fca")(x))
    from tdviz.checkpoints import model_from_checkpoint

    inferred = model_from_checkpoint(path)  # weights alone (no --model) find FCA, not SE
    assert inferred.tdviz_name == "demo_resnet_fca"
    assert "FCA attention" in describe_state_dict({k: tuple(v.shape) for k, v in load_file(str(path)).items()})
    state = load_file(str(path))
    key = next(k for k in model.state_dict() if k.endswith(".dct_weight"))
    state[key] = torch.zeros(3, 7, 7)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(tdviz.CheckpointError):
        tdviz.load_weights(tdviz.create_model("demo_resnet_fca"), tmp_path / "bad.safetensors")
