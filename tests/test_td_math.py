"""TD blocks against a direct hand computation of the paper's eqs. 4-8 (float64, small tensors)."""

import pytest
import torch
import torch.nn.functional as F

from tdviz.models.resnet import BasicBlock, Bottleneck, TDConfig
from tdviz.models.td import TDAttention, record_td_passes


def _randomize(module):
    """Random weights and BN statistics, so BN and per-step BNs really differ."""
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.copy_(torch.rand_like(t) + 0.5)
                else:
                    t.copy_(torch.randn_like(t) * 0.3)
    return module.double().eval()


def hand_searchlight(att, top, bottom, attention):
    """Eq. 4 (joint) or eq. 5 (top) written out with matrices."""
    relu = lambda v: v.clamp_min(0)
    pt = top.mean((2, 3))
    if attention == "joint":
        wt = att.Ug_top_mlp[0].weight[:, :, 0, 0]
        wb = att.Ug_bottom_mlp[0].weight[:, :, 0, 0]
        ws = att.Ug_mlp[0].weight[:, :, 0, 0]
        pb = bottom.mean((2, 3))
        return torch.cat([relu(pt @ wt.T), relu(pb @ wb.T)], 1) @ ws.T
    w1, w2 = att.Ug_mlp[0].weight[:, :, 0, 0], att.Ug_mlp[2].weight[:, :, 0, 0]
    return relu(pt @ w1.T) @ w2.T


def hand_att(bottom, s):
    """Eqs. 6-8: X' = X * sigmoid(S); A = sum_c S_c X'_c; next X = X' * sigmoid(A)."""
    b, c, h, w = bottom.shape
    x_prime = bottom * torch.sigmoid(s).reshape(b, c, 1, 1)
    a = torch.zeros(b, h, w, dtype=bottom.dtype)
    for ch in range(c):
        a += s[:, ch].reshape(b, 1, 1) * x_prime[:, ch]
    return x_prime * torch.sigmoid(a).reshape(b, 1, h, w), a


def bn(block, name, k, x):
    mod = getattr(block, name if k == 0 else f"{name}_{k}")
    return F.batch_norm(x, mod.running_mean, mod.running_var, mod.weight, mod.bias, False, 0.0, mod.eps)


def hand_bottleneck(block, x, steps, m, attention):
    conv = lambda name, v: F.conv2d(v, getattr(block, name).weight, stride=getattr(block, name).stride,
                                    padding=getattr(block, name).padding)
    a1 = F.relu(bn(block, "bn1", 0, conv("conv1", x)))
    a2 = F.relu(bn(block, "bn2", 0, conv("conv2", a1)))
    top = bn(block, "bn3", 0, conv("conv3", a2))
    bottom = {1: a2, 2: a1, 3: x}[m]
    maps = []
    for k in range(1, steps):
        s = hand_searchlight(block.RA_block, top, bottom, attention)
        bottom, a = hand_att(bottom, s)
        maps.append((s, a))
        h = bottom
        if m == 3:
            h = F.relu(bn(block, "bn1", k, conv("conv1", h)))
        if m >= 2:
            h = F.relu(bn(block, "bn2", k, conv("conv2", h)))
        top = bn(block, "bn3", k, conv("conv3", h))
    shortcut = block.downsample(x) if block.downsample is not None else x
    return F.relu(top + shortcut), maps


def hand_basic(block, x, steps, m, attention):
    conv = lambda name, v: F.conv2d(v, getattr(block, name).weight, stride=getattr(block, name).stride,
                                    padding=1)
    a1 = F.relu(bn(block, "bn1", 0, conv("conv1", x)))
    top = bn(block, "bn2", 0, conv("conv2", a1))
    bottom = {1: a1, 2: x}[m]
    maps = []
    for k in range(1, steps):
        s = hand_searchlight(block.RA_block, top, bottom, attention)
        bottom, a = hand_att(bottom, s)
        maps.append((s, a))
        h = bottom
        if m == 2:
            h = F.relu(bn(block, "bn1", k, conv("conv1", h)))
        top = bn(block, "bn2", k, conv("conv2", h))
    shortcut = block.downsample(x) if block.downsample is not None else x
    return F.relu(top + shortcut), maps


def _downsample(cin, cout, stride):
    return torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False), torch.nn.BatchNorm2d(cout))


CASES = [(kind, attention, steps, m) for kind, ms in (("bottleneck", (1, 2, 3)), ("basic", (1, 2)))
         for attention in ("joint", "top") for steps in (2, 3) for m in ms]


@pytest.mark.parametrize("kind,attention,steps,m", CASES)
def test_block_matches_hand_computation(kind, attention, steps, m):
    td = TDConfig(steps=steps, m=m, attention=attention)
    if kind == "bottleneck":
        block = Bottleneck(32, 16, stride=2, downsample=_downsample(32, 64, 2), td=td)
        hand = hand_bottleneck
    else:
        block = BasicBlock(16, 32, stride=2, downsample=_downsample(16, 32, 2), td=td)
        hand = hand_basic
    block = _randomize(block)
    x = torch.randn(2, block.conv1.in_channels, 10, 10, dtype=torch.float64)
    with torch.no_grad(), record_td_passes() as passes:
        out = block(x)
        expected, maps = hand(block, x, steps, m, attention)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    recorded = passes[block.RA_block]
    assert [p.step for p in recorded] == list(range(1, steps))
    for p, (s, a) in zip(recorded, maps):
        torch.testing.assert_close(p.searchlight, s, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(p.spatial, a, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("attention", ["joint", "top"])
def test_attention_pass_alone(attention):
    att = _randomize(TDAttention(64, 24, attention)).double()
    top, bottom = torch.randn(3, 64, 5, 5).double(), torch.randn(3, 24, 5, 5).double()
    with torch.no_grad():
        s = hand_searchlight(att, top, bottom, attention)
        expected, _ = hand_att(bottom, s)
        torch.testing.assert_close(att(top, bottom), expected, rtol=1e-12, atol=1e-12)


def test_ablation_orders():
    torch.manual_seed(1)
    bottom, s = torch.randn(2, 8, 4, 4).double(), torch.randn(2, 8).double()
    att = TDAttention(16, 8, "top", order="channel->spatial")
    sig = torch.sigmoid
    g = sig(s)[:, :, None, None]
    a_raw = (bottom * s[:, :, None, None]).sum(1)
    expect = {
        "spatial->channel": bottom * sig(a_raw)[:, None] * g,
        "parallel": bottom * g * sig(a_raw)[:, None],
        "channel": bottom * g,
        "spatial": bottom * sig(a_raw)[:, None],
        "channel->spatial": hand_att(bottom, s)[0],
    }
    for order, want in expect.items():
        att.order = order
        torch.testing.assert_close(att.modulate(bottom, s)[0], want)


@pytest.mark.parametrize("kind", ["bottleneck", "basic"])
def test_td_block_with_one_step_is_the_plain_block(kind):
    if kind == "bottleneck":
        plain = Bottleneck(32, 16, 2, _downsample(32, 64, 2))
        td = Bottleneck(32, 16, 2, _downsample(32, 64, 2), td=TDConfig(steps=1, m=1))
    else:
        plain = BasicBlock(16, 32, 2, _downsample(16, 32, 2))
        td = BasicBlock(16, 32, 2, _downsample(16, 32, 2), td=TDConfig(steps=1, m=2))
    plain = _randomize(plain)
    missing, unexpected = td.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("RA_block.") for k in missing)
    td = td.double().eval()
    x = torch.randn(2, plain.conv1.in_channels, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(td(x), plain(x))
        # the same weights with T=2 (plus random TD parts) do change the output
        cin, width = td.conv1.in_channels, td.conv1.out_channels
        out_ch = width * (4 if kind == "bottleneck" else 1)
        td2 = type(td)(cin, width, 2, _downsample(cin, out_ch, 2), td=TDConfig(steps=2, m=1))
        _randomize(td2)
        td2.load_state_dict(plain.state_dict(), strict=False)
        assert not torch.allclose(td2(x), plain(x))
