import math

import pytest
import torch
from torch import nn

from tdviz.models.attention import (
    FCA_TOP16,
    FCAModule,
    eca_kernel_size,
    fca_dct_size,
    make_attention,
)

KINDS = ["se", "cbam", "eca", "fca"]
R = 16


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("channels,planes,hw", [(256, 64, 56), (64, 64, 9), (512, 128, 5)])
def test_shape_and_gate_range(kind, channels, planes, hw):
    torch.manual_seed(0)
    m = make_attention(kind, channels, planes).eval()
    x = torch.rand(2, channels, hw, hw) + 0.1  # strictly positive
    with torch.no_grad():
        y = m(x)
    assert y.shape == x.shape
    gate = y / x
    assert gate.min() >= 0 and gate.max() <= 1


@pytest.mark.parametrize("kind,expected", [("se", 0.5), ("eca", 0.5), ("fca", 0.5), ("cbam", 0.25)])
def test_zero_weights_give_half_gate(kind, expected):
    m = make_attention(kind, 64, 64).eval()  # eval: CBAM's BN uses running stats (0, 1)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        x = torch.randn(2, 64, 7, 7)
        assert torch.equal(m(x), x * expected)


@pytest.mark.parametrize("channels", [256, 512, 1024, 2048])
def test_param_count_formulas(channels):
    planes = channels // 4
    se = 2 * channels * channels // R
    assert n_params(make_attention("se", channels, planes)) == se
    assert n_params(make_attention("fca", channels, planes)) == se
    assert n_params(make_attention("cbam", channels, planes)) == se + 98 + 2
    assert n_params(make_attention("eca", channels, planes)) == eca_kernel_size(channels)


def test_eca_kernel_sizes():
    for c in (256, 512, 1024, 2048):
        t = int(abs((math.log2(c) + 1) / 2))
        assert eca_kernel_size(c) == (t if t % 2 else t + 1)
    assert [eca_kernel_size(c) for c in (256, 512, 1024, 2048)] == [5, 5, 5, 7]
    m = make_attention("eca", 2048, 512)
    assert m.conv.kernel_size == (7,) and m.conv.padding == (3,)


@pytest.fixture(scope="module")
def resnet50_params():
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):  # no weight init needed just to count
        net = torchvision.models.resnet50()
    return n_params(net)


@pytest.mark.parametrize("kind,expected", [(None, 25.56), ("se", 28.07), ("cbam", 28.07),
                                           ("eca", 25.56), ("fca", 28.07)])
def test_resnet50_totals(resnet50_params, kind, expected):
    assert resnet50_params == 25_557_032
    total = resnet50_params
    if kind is not None:
        for blocks, planes in zip([3, 4, 6, 3], [64, 128, 256, 512]):
            total += blocks * n_params(make_attention(kind, planes * 4, planes))
    assert round(total / 1e6, 2) == expected


def test_fca_dct_is_buffer_and_table():
    m = FCAModule(256, 64)
    assert "dct_weight" in dict(m.named_buffers())
    assert "dct_weight" not in dict(m.named_parameters())
    assert m.dct_weight.shape == (256, 56, 56)
    assert [fca_dct_size(p) for p in (64, 128, 256, 512, 32)] == [56, 28, 14, 7, 7]


@pytest.mark.parametrize("channels,planes", [(256, 64), (512, 128), (1024, 256), (2048, 512), (64, 16)])
def test_fca_dct_orthogonality(channels, planes):
    m = FCAModule(channels, planes)
    s = m.dct_size
    group = channels // len(FCA_TOP16)
    assert FCA_TOP16[0] == (0, 0)
    x = torch.full((1, channels, s, s), 3.0, dtype=torch.float32)
    pooled = m.spectral_pool(x)[0]
    # (0,0) group: scaled GAP = sqrt(s*s) * mean = s * 3
    assert torch.allclose(pooled[:group], torch.full((group,), 3.0 * s), rtol=1e-5)
    # every other frequency is orthogonal to a constant map
    assert pooled[group:].abs().max() < 1e-4
    # (0,0) filter equals sqrt(h*w) times the average-pool weight 1/(h*w)
    assert torch.allclose(m.dct_weight[0], torch.full((s, s), s / (s * s)))
    # the basis is orthonormal: distinct groups' filters have unit norm, zero dot products
    filters = m.dct_weight[::group].flatten(1).double()
    assert torch.allclose(filters @ filters.T, torch.eye(len(FCA_TOP16), dtype=torch.float64), atol=1e-5)


def test_fca_resizes_input():
    torch.manual_seed(0)
    m = FCAModule(256, 64).eval()  # dct 56
    x = torch.randn(1, 256, 28, 28)
    assert m(x).shape == x.shape
    x56 = torch.nn.functional.adaptive_avg_pool2d(x, 56)
    assert torch.allclose(m.spectral_pool(x), m.spectral_pool(x56))


def test_unknown_kind():
    with pytest.raises(ValueError, match="se, cbam, eca, fca"):
        make_attention("nonlocal", 256, 64)
