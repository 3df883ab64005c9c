"""ResNets with TD blocks (the authors' layout) and with SE / CBAM / ECA / FCA baselines.

Parameter names follow torchvision's ResNet, with TD keys after a block's plain keys exactly as in
the authors' ``timm_td_resnet.py``: per-step BatchNorms ``bn<i>_<k>`` then ``RA_block.*``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .attention import make_attention
from .base import SteppedModel
from .registry import ModelSpec, register
from .td import (  # TDConfig re-exported: its old home
    TDAttention,
    TDBlock,
    TDConfig,
    check_steps,
    norm_at,
    per_step_norms,
    run_td_passes,
)


class _TDResidual(TDBlock):
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
        if self.td_steps is not None:
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


_DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
           101: ("bottleneck", (3, 4, 23, 3))}
_ALL_L3_L4 = {2: range(64), 3: range(64)}
#: The authors' ResNet101 TD placement: 10 alternating blocks of layer3 (past-depth indices ignored) + layer4.
R101_L3_BLOCKS = (0, 1, 2, 8, 13, 18, 22, 23, 24, 25)


def _register_resnets() -> None:
    for depth, (block, layers) in _DEPTHS.items():
        base = {"block": block, "layers": layers}
        register(ModelSpec(f"resnet{depth}", ResNet, base, description=f"ResNet{depth} (torchvision layout)"))
        for kind, label in (("se", "SE"), ("cbam", "CBAM"), ("eca", "ECA"), ("fca", "FCA-TS (top-16 DCT)")):
            register(ModelSpec(f"resnet{depth}_{kind}", ResNet, {**base, "attention": kind},
                               description=f"ResNet{depth} + {label} in every block"))
        td_at = {2: R101_L3_BLOCKS, 3: range(64)} if depth == 101 else _ALL_L3_L4
        td_kwargs = {**base, "td_blocks": td_at}
        m_default = 1 if block == "bottleneck" else 2
        m_top = 3 if block == "bottleneck" else 2
        register(ModelSpec(f"resnet{depth}_tdjoint", ResNet, td_kwargs, TDConfig(2, m_default, "joint"),
                           f"TD-ResNet{depth}, joint attention (t=2, m={m_default})"))
        register(ModelSpec(f"resnet{depth}_tdtop", ResNet, td_kwargs, TDConfig(2, m_top, "top"),
                           f"TD-ResNet{depth}, top attention (t=2, m={m_top})"))
        if block == "bottleneck":
            register(ModelSpec(f"resnet{depth}_tdtop_m1", ResNet, td_kwargs, TDConfig(2, 1, "top"),
                               f"TD-ResNet{depth}, top attention (t=2, m=1)"))
    register(ModelSpec("resnet101_tdjoint_l4", ResNet, {"block": "bottleneck", "layers": _DEPTHS[101][1],
                                                        "td_blocks": {3: range(64)}},
                       TDConfig(2, 1, "joint"), "TD-ResNet101, joint attention (t=2, m=1), layer4 only"))


_register_resnets()
