"""ResNets with TD blocks (the authors' layout) and with SE / CBAM / ECA / FCA baselines.

Parameter names follow torchvision's ResNet, with TD keys after a block's plain keys exactly as in
the authors' ``timm_td_resnet.py``: per-step BatchNorms ``bn<i>_<k>`` then ``RA_block.*``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .attention import make_attention
from .base import SteppedModel
from .td import (
    ATTENTIONS,
    ORDERS,
    TDAttention,
    check_steps,
    norm_at,
    per_step_norms,
    run_td_passes,
)


@dataclass(frozen=True)
class TDConfig:
    """Settings of the TD blocks of a model: T steps, feedback distance m, joint/top attention."""

    steps: int = 2
    m: int = 1
    attention: str = "joint"
    reduction: int = 16
    order: str = "channel->spatial"

    def validate(self, max_m: int, block: str) -> None:
        if self.steps < 1:
            raise ValueError(f"steps={self.steps}: a TD block needs at least 1 computation step.")
        if not 0 <= self.m <= max_m:
            raise ValueError(f"m={self.m}: a {block} supports feedback distance 0..{max_m}.")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention={self.attention!r} is not one of {ATTENTIONS}.")
        if self.order not in ORDERS:
            raise ValueError(f"order={self.order!r} is not one of {ORDERS}.")


class _TDResidual(nn.Module):
    """Shared step loop of TD residual blocks.

    Subclasses define ``_convs`` (the (conv, bn-name, has-activation) chain of the residual branch)
    and ``_bottom_index`` (which chain position's input is the bottom map for a given m).
    """

    _convs: tuple[tuple[str, str, bool], ...]

    def _init_td(self, td: TDConfig | None, top_channels: int, bottom_channels: int) -> None:
        self.td_steps = td.steps
        self.td_m = td.m
        first = len(self._convs) - td.m if td.m else len(self._convs)
        rerun_bns = [bn for _, bn, _ in self._convs[first:]]
        per_step_norms(self, rerun_bns, td.steps, lambda name: nn.BatchNorm2d(getattr(self, name).num_features))
        self.RA_block = TDAttention(top_channels, bottom_channels, td.attention, td.reduction, td.order)

    def _chain(self, x: Tensor, start: int, k: int) -> tuple[Tensor, Tensor | None]:
        """Run the branch from chain position ``start`` with the norms of pass k.

        Returns the top map and, on pass 0, the bottom map a TD block will modulate.
        """
        bottom = None
        m = getattr(self, "td_m", None)
        for i, (conv, bn, act) in enumerate(self._convs[start:], start):
            if m is not None and i == len(self._convs) - m:
                bottom = x
            x = norm_at(self, bn, k)(getattr(self, conv)(x))
            if act:
                x = self.relu(x)
        return x, bottom

    def forward(self, x: Tensor, steps: int | None = None) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        top, bottom = self._chain(x, 0, 0)
        if getattr(self, "attn", None) is not None:
            top = self.attn(top)
        if hasattr(self, "td_steps"):
            steps = check_steps(steps, self.td_steps, type(self).__name__)
            start = len(self._convs) - self.td_m
            top = run_td_passes(self, top, bottom, steps, lambda b, k: self._chain(b, start, k)[0])
        return self.relu(top + shortcut)


class Bottleneck(_TDResidual):
    """ResNet v1.5 bottleneck (stride on the 3x3), optionally with a baseline attention or TD.

    TD bottom map by feedback distance m: 1 = after act2 (conv3 re-run), 2 = after act1
    (conv2, conv3 re-run), 3 = the block input (all three re-run), 0 = the top map itself.
    """

    expansion = 4
    _convs = (("conv1", "bn1", True), ("conv2", "bn2", True), ("conv3", "bn3", False))

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 attention: str | None = None, td: TDConfig | None = None) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU()
        self.attn = make_attention(attention, out, planes) if attention else None
        self.downsample = downsample
        if td is not None:
            td.validate(3, "Bottleneck")
            self._init_td(td, out, {0: out, 1: planes, 2: planes, 3: inplanes}[td.m])


class BasicBlock(_TDResidual):
    """ResNet basic block, optionally with a baseline attention or TD.

    TD bottom map by m: 1 = after act1 (conv2 re-run), 2 = the block input (both re-run), 0 = top.
    """

    expansion = 1
    _convs = (("conv1", "bn1", True), ("conv2", "bn2", False))

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 attention: str | None = None, td: TDConfig | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.attn = make_attention(attention, planes, planes) if attention else None
        self.downsample = downsample
        if td is not None:
            td.validate(2, "BasicBlock")
            self._init_td(td, planes, {0: planes, 1: planes, 2: inplanes}[td.m])


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(SteppedModel):
    """torchvision-layout ResNet whose chosen blocks are TD blocks.

    ``td_blocks`` maps a 0-based stage index to the block indices that get TD (indices past the
    stage's depth are ignored, as in the authors' code). Steps: stem..layer3 are the trunk, layer4
    is re-run per computation step.
    """

    def __init__(self, block: str, layers: Sequence[int], num_classes: int = 1000,
                 widths: Sequence[int] = (64, 128, 256, 512), stem_width: int = 64,
                 attention: str | None = None, td: TDConfig | None = None,
                 td_blocks: dict[int, Sequence[int]] | None = None, in_chans: int = 3) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block={block!r} is not one of {sorted(BLOCKS)}.")
        if attention is not None and td is not None:
            raise ValueError("A ResNet takes either a baseline attention or TD blocks, not both.")
        cls = BLOCKS[block]
        self.td = td
        self.td_blocks = {int(k): sorted({i for i in v if i < layers[int(k)]}) for k, v in (td_blocks or {}).items()}
        self.conv1 = nn.Conv2d(in_chans, stem_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = stem_width
        for s, (depth, width) in enumerate(zip(layers, widths)):
            blocks = []
            for i in range(depth):
                stride = 2 if s > 0 and i == 0 else 1
                downsample = None
                if stride != 1 or inplanes != width * cls.expansion:
                    downsample = nn.Sequential(
                        nn.Conv2d(inplanes, width * cls.expansion, 1, stride, bias=False),
                        nn.BatchNorm2d(width * cls.expansion),
                    )
                block_td = td if td is not None and i in self.td_blocks.get(s, ()) else None
                blocks.append(cls(inplanes, width, stride, downsample, attention, block_td))
                inplanes = width * cls.expansion
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.num_stages = len(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = inplanes
        self.fc = nn.Linear(inplanes, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(mod, nn.BatchNorm2d):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)

    def forward_trunk(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for s in range(1, self.num_stages):
            x = getattr(self, f"layer{s}")(x)
        return x

    def stage_blocks(self) -> list[nn.Module]:
        return list(getattr(self, f"layer{self.num_stages}"))

    def get_classifier(self) -> nn.Linear:
        return self.fc

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def gap_linear_head(self) -> nn.Linear:
        """The classifier fed by global average pooling of ``feature_layer`` (closed-form Grad-CAM)."""
        return self.fc

    @property
    def feature_layer(self) -> str:
        """Name of the layer that feeds global pooling + the linear head (Grad-CAM's usual target)."""
        last = getattr(self, f"layer{self.num_stages}")
        return f"layer{self.num_stages}.{len(last) - 1}"
