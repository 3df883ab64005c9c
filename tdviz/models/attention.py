"""Channel / spatial attention modules of the baseline ResNets compared against TD.

All modules map ``[B, C, H, W] -> [B, C, H, W]`` by multiplying the input with a
gate in ``[0, 1]``.  In a ResNet Bottleneck they are applied to the ``bn3``
output (``channels = planes * 4``) before the residual addition; in a
BasicBlock ``channels = planes``.

Parameter budget (ResNet-50, module after every Bottleneck's ``bn3``, BN
buffers excluded): plain 25.56 M, SE 28.07 M, CBAM 28.07 M, ECA 25.56 M,
FCA 28.07 M.  This requires the SE-style MLPs to be bias-free.

Use :func:`make_attention` to build a module by name.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FCA_TOP16",
    "CBAMModule",
    "ECAModule",
    "FCAModule",
    "SEModule",
    "eca_kernel_size",
    "fca_dct_size",
    "make_attention",
]


def _hidden(channels: int, reduction: int) -> int:
    # max(1, .) only matters for tiny demo widths with channels < reduction.
    return max(1, channels // reduction)


def _bottleneck_mlp(channels: int, reduction: int, conv: bool) -> nn.Sequential:
    """C -> C/r -> C MLP without biases (1x1 convs if ``conv`` else linears)."""
    hidden = _hidden(channels, reduction)
    if conv:
        first = nn.Conv2d(channels, hidden, 1, bias=False)
        second = nn.Conv2d(hidden, channels, 1, bias=False)
    else:
        first = nn.Linear(channels, hidden, bias=False)
        second = nn.Linear(hidden, channels, bias=False)
    return nn.Sequential(first, nn.ReLU(inplace=True), second)


class SEModule(nn.Module):
    """Squeeze-and-Excitation (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018).

    ``x * sigmoid(W2 relu(W1 GAP(x)))`` with W1: 1x1 conv C -> C/r and W2: 1x1
    conv C/r -> C, both **without bias** (so params = 2*C*(C/r)).  r = 16.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.mlp = _bottleneck_mlp(channels, reduction, conv=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(x, 1)))


class CBAMModule(nn.Module):
    """CBAM (Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018).

    Channel attention then spatial attention, sequentially:

    * channel: a shared MLP (1x1 conv C -> C/r, ReLU, 1x1 conv C/r -> C, both
      **without bias**) applied to the global-avg- and global-max-pooled
      vectors; the two outputs are summed and passed through a sigmoid.
    * spatial: ``cat[max over channels, mean over channels]`` (the official
      code's order, so its 7x7 conv weights apply unchanged; the paper writes
      [avg; max]) ->
      7x7 conv 2 -> 1 (padding 3, **no bias**) -> ``BatchNorm2d(1)`` (as in the
      official CBAM code, affine) -> sigmoid.

    Params = 2*C*(C/r) + 98 (conv) + 2 (BN affine).  r = 16.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.mlp = _bottleneck_mlp(channels, reduction, conv=True)
        self.spatial_conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.spatial_bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        x = x * torch.sigmoid(avg + mx)
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial_bn(self.spatial_conv(pooled)))


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA adaptive kernel size: t = int(|(log2 C + b) / gamma|), made odd (t or t+1)."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class ECAModule(nn.Module):
    """Efficient Channel Attention (Wang et al., "ECA-Net", CVPR 2020).

    ``x * sigmoid(conv1d_k(GAP(x)))`` where the 1-D conv (1 -> 1 channel,
    padding k//2, **no bias**) slides over the channel axis.  The kernel size
    is adaptive, ``k = eca_kernel_size(C)`` (gamma=2, b=1), so params = k.
    """

    def __init__(self, channels: int, kernel_size: int | None = None):
        super().__init__()
        k = eca_kernel_size(channels) if kernel_size is None else kernel_size
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.adaptive_avg_pool2d(x, 1).flatten(1).unsqueeze(1)  # [B, 1, C]
        y = self.conv(y).transpose(1, 2).unsqueeze(-1)  # [B, C, 1, 1]
        return x * torch.sigmoid(y)


# FcaNet's "top16" frequency components (u, v) on a 7x7 DCT grid, in FcaNet's
# order (selected there by single-frequency ImageNet accuracy).
FCA_TOP16 = (
    (0, 0), (0, 1), (6, 0), (0, 5), (0, 2), (1, 0), (1, 2), (4, 0),
    (5, 0), (1, 6), (3, 0), (0, 4), (0, 6), (0, 3), (3, 5), (2, 2),
)

# FcaNet's dct size per block, keyed by the block's ``planes`` (= the spatial
# size of that ResNet stage for 224x224 ImageNet inputs).
_FCA_C2WH = {64: 56, 128: 28, 256: 14, 512: 7}


def fca_dct_size(planes: int) -> int:
    """DCT size for a block with ``planes``; 7 (the base grid) if not in FcaNet's table."""
    return _FCA_C2WH.get(planes, 7)


def _dct_1d(pos: int, freq: int, size: int) -> float:
    """Orthonormal DCT-II basis value cos(pi*freq*(pos+1/2)/size) * scale."""
    scale = math.sqrt((1.0 if freq == 0 else 2.0) / size)
    return math.cos(math.pi * freq * (pos + 0.5) / size) * scale


def _dct_filters(channels: int, h: int, w: int, freqs) -> torch.Tensor:
    """[C, h, w] filter: channel group i (C/len(freqs) channels) gets basis freqs[i]."""
    group = channels // len(freqs)
    weight = torch.zeros(channels, h, w)
    for i, (u, v) in enumerate(freqs):
        bu = torch.tensor([_dct_1d(p, u, h) for p in range(h)])
        bv = torch.tensor([_dct_1d(p, v, w) for p in range(w)])
        weight[i * group:(i + 1) * group] = torch.outer(bu, bv)
    return weight


#: key suffix of FCA's DCT filter bank: fixed by the architecture, so a checkpoint may leave it out
DERIVED_BUFFER = ".dct_weight"


class FCAModule(nn.Module):
    """Multi-spectral channel attention (Qin et al., "FcaNet: Frequency Channel
    Attention Networks", ICCV 2021), the "FCA-TS" (top-16) variant.

    * The C channels are split into 16 equal groups; group i is pooled with the
      2-D orthonormal DCT-II basis of frequency ``FCA_TOP16[i]`` (indices on a
      7x7 grid, multiplied by ``dct_size // 7``), i.e. ``sum_hw x * basis``.
      The (0, 0) basis is ``1/sqrt(h*w)``, i.e. sqrt(h*w) times GAP.
    * The filter bank is a registered **buffer** ``dct_weight`` [C, s, s]
      (fixed, not learned, not counted as parameters).
    * ``s = fca_dct_size(planes)``: FcaNet's table {64: 56, 128: 28, 256: 14,
      512: 7}; any other ``planes`` (scaled-down demo nets) falls back to 7.
      If the input is not s x s it is first ``adaptive_avg_pool2d``-ed to s x s.
    * Excitation: Linear C -> C/r (**no bias**), ReLU, Linear C/r -> C (**no
      bias**), sigmoid; params = 2*C*(C/r).  r = 16.

    Requires C divisible by 16.
    """

    def __init__(self, channels: int, planes: int, reduction: int = 16):
        super().__init__()
        n = len(FCA_TOP16)
        if channels % n:
            raise ValueError(f"FCA needs channels divisible by {n}, got {channels}")
        self.dct_size = s = fca_dct_size(planes)
        freqs = [(u * (s // 7), v * (s // 7)) for u, v in FCA_TOP16]
        self.register_buffer("dct_weight", _dct_filters(channels, s, s, freqs))
        self.fc = _bottleneck_mlp(channels, reduction, conv=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.spectral_pool(x)
        return x * torch.sigmoid(self.fc(pooled))[:, :, None, None]

    def spectral_pool(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, C] DCT-pooled descriptor."""
        s = self.dct_size
        if x.shape[-2:] != (s, s):
            x = F.adaptive_avg_pool2d(x, (s, s))
        return (x * self.dct_weight).sum(dim=(2, 3))


KINDS = ("se", "cbam", "eca", "fca")


def make_attention(kind: str, channels: int, planes: int, reduction: int = 16) -> nn.Module:
    """Build attention module ``kind`` in {"se", "cbam", "eca", "fca"}.

    ``channels``: channels of the attended tensor (planes*4 for a Bottleneck,
    planes for a BasicBlock); ``planes``: the block's planes (FCA dct size).
    ``reduction`` is ignored by ECA.
    """
    if kind == "se":
        return SEModule(channels, reduction)
    if kind == "cbam":
        return CBAMModule(channels, reduction)
    if kind == "eca":
        return ECAModule(channels)
    if kind == "fca":
        return FCAModule(channels, planes, reduction)
    raise ValueError(f"unknown attention kind {kind!r}; valid kinds: {', '.join(KINDS)}")
