"""The step runner: per-step logits and activations, without touching the model."""

import pytest
import torch

import tdviz


@pytest.fixture(scope="module")
def td_model():
    torch.manual_seed(0)
    return tdviz.create_model("resnet18_tdjoint", num_classes=10)


def _snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()])


def test_step_T_equals_forward_and_model_is_untouched(td_model):
    model = td_model.train()  # train mode: BN running stats would move if the runner ran in it
    before, flags = _snapshot(model)
    x = torch.randn(3, 3, 64, 64)
    out = tdviz.run_steps(model, x, layers=["layer4", "layer3", "layer4.1.conv2", "fc"])
    after, flags_after = _snapshot(model)
    assert flags_after == flags
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not m._forward_hooks for m in model.modules())
    model.eval()
    with torch.no_grad():
        ref = model(x)
    assert out.logits.shape == (3, 2, 10)
    torch.testing.assert_close(out.logits[:, -1], ref, rtol=0, atol=0)
    assert not torch.allclose(out.logits[:, 0], out.logits[:, 1])
    # activations: per step in the last stage, constant over steps in the trunk
    assert out.activations["layer4"].shape == (3, 2, 512, 2, 2)
    torch.testing.assert_close(out.activations["fc"], out.logits)
    assert torch.equal(out.activations["layer3"][:, 0], out.activations["layer3"][:, 1])
    assert not torch.equal(out.activations["layer4"][:, 0], out.activations["layer4"][:, 1])


def test_step_one_is_the_feedforward_last_stage(td_model):
    model = td_model.eval()
    x = torch.randn(2, 3, 64, 64)
    out = tdviz.run_steps(model, x)
    with torch.no_grad():
        h = model.forward_trunk(x)
        for block in model.layer4:
            h = block(h, steps=1)
        torch.testing.assert_close(out.logits[:, 0], model.forward_head(h), rtol=0, atol=0)


def test_trunk_runs_once(td_model):
    calls = []
    handle = td_model.layer3.register_forward_hook(lambda *a: calls.append(1))
    try:
        tdviz.run_steps(td_model, torch.randn(1, 3, 64, 64))
    finally:
        handle.remove()
    assert len(calls) == 1


def test_td_maps_for_every_block(td_model):
    out = tdviz.run_steps(td_model, torch.randn(2, 3, 64, 64))
    assert sorted(out.td_passes) == ["layer3.0", "layer3.1", "layer4.0", "layer4.1"]
    p = out.td_passes["layer4.1"]
    assert len(p) == 1 and p[0].step == 1
    assert p[0].searchlight.shape == (2, 512) and p[0].spatial.shape == (2, 2, 2)


def test_baseline_has_one_step():
    model = tdviz.create_model("resnet18_se", num_classes=5)
    x = torch.randn(2, 3, 64, 64)
    out = tdviz.run_steps(model, x, layers=["layer4"])
    assert out.logits.shape == (2, 1, 5) and out.td_passes == {}
    with torch.no_grad():
        torch.testing.assert_close(out.logits[:, 0], model.eval()(x))


def test_plain_torch_module_is_one_step():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    out = tdviz.run_steps(model, torch.randn(2, 3, 2, 2), layers=["1"])
    assert out.logits.shape == (2, 1, 4) and out.activations["1"].shape == (2, 1, 4)


def test_most_confident_step():
    logits = torch.tensor([[[0.0, 5.0], [0.0, 1.0]], [[0.0, 1.0], [9.0, 0.0]]])
    step, chosen = tdviz.most_confident_step(logits)
    assert step.tolist() == [1, 2]  # steps are counted from 1 everywhere (TDPass.step, the CLI, records)
    assert torch.equal(chosen, torch.tensor([[0.0, 5.0], [9.0, 0.0]]))


def test_step_numbers_share_one_convention(td_model):
    out = tdviz.run_steps(td_model, torch.randn(3, 3, 64, 64))
    step, chosen = out.most_confident()
    assert set(step.tolist()) <= {1, 2}
    for i, s in enumerate(step.tolist()):
        assert torch.equal(chosen[i], out.logits[i, s - 1])
    assert [p.step for p in next(iter(out.td_passes.values()))] == [1]


def test_bad_layer_and_steps(td_model):
    with pytest.raises(tdviz.TdvizError, match="Nearest layer names: layer4"):
        tdviz.run_steps(td_model, torch.randn(1, 3, 64, 64), layers=["layer5"])
    with pytest.raises(tdviz.TdvizError, match="outside 1..2"):
        tdviz.run_steps(td_model, torch.randn(1, 3, 64, 64), steps=3)
    with pytest.raises(tdviz.TdvizError, match="batch of images"):
        tdviz.run_steps(td_model, torch.randn(3, 64, 64))
    out = tdviz.run_steps(td_model, torch.randn(1, 3, 64, 64), steps=1)
    assert out.num_steps == 1
