"""MobileNetV3-Large with TD blocks replacing the SE modules of its final three layers.

TDAM (ECCV 2022, sec. 4): "For MobileNetV3 large, we apply our module at the final three layers,
replacing the existing SE blocks in those layers." The authors released no MobileNetV3 code, so the
TD integration below is ours, following the paper and tdviz's ResNet TD blocks.

Layout and parameter names are torchvision's ``mobilenet_v3_large`` (``features.<i>.block.<j>...``,
``avgpool``, ``classifier``): ``torchvision.models.mobilenet_v3_large().state_dict()`` loads into the
plain model with ``strict=True``.

TD block (the last three InvertedResidual blocks, ``features.13``-``features.15``):

* the SE module at ``block.2`` is replaced by an ``nn.Identity`` placeholder, so the projection stays
  at ``block.3`` and every other torchvision key is unchanged (the SE keys ``block.2.fc1/fc2`` are
  simply absent);
* top map = the projection BN output (``block.3``, before the residual add if any); bottom map = the
  input of the first re-run layer, by feedback distance m:

  - m = 1: the projection conv's input, i.e. where SE sat (after the depthwise activation);
    the projection is re-run;
  - m = 2: the depthwise conv's input (after the expansion activation); depthwise + projection re-run;
  - m = 3: the block input; expansion + depthwise + projection re-run (bottom = input channels);
  - m = 0: the top map itself (the ablation's "no distance" case).

* per-step BatchNorm copies of each re-run layer, registered after the block's plain modules as
  ``expand_bn_<k>``, ``dw_bn_<k>``, ``project_bn_<k>`` (k = 1..T-1), then ``RA_block``;
* TDAttention with bottom = the bottom map's width (the expanded width for m = 1, 2), top = the
  block's output channels, reduction 16 on the top channels (160 // 16 = 10 hidden units).

Steps: ``features[:13]`` is the trunk; the last three blocks and the final 1x1 conv layer
(``features.16``) are re-run per computation step; the head is avgpool + classifier.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from .base import SteppedModel
from .registry import ModelSpec, register
from .td import TDAttention, TDBlock, TDConfig, check_steps, per_step_norms, run_td_passes

#: (in, kernel, expanded, out, use_se, activation, stride) of torchvision's mobilenet_v3_large.
LARGE_CONFIG = (
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
)
LAST_CHANNEL = 1280
#: How many final InvertedResidual blocks are the re-run stage (and TD blocks in a TD model).
NUM_LAST_BLOCKS = 3
#: Feedback distances a TD InvertedResidual supports (see the module docstring).
MOBILENET_M = (0, 1, 2, 3)


def _make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision's channel rounding (nearest multiple of ``divisor``, never 10% below ``v``)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


_norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


class InvertedResidual(TDBlock):
    """torchvision's MobileNetV3 InvertedResidual (same attribute names), optionally a TD block."""

    def __init__(self, in_ch: int, kernel: int, expanded: int, out_ch: int, use_se: bool, activation: str,
                 stride: int, td: TDConfig | None = None) -> None:
        from torchvision.ops.misc import (  # ~1 s: only when built
            Conv2dNormActivation,
            SqueezeExcitation,
        )

        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride={stride}: an InvertedResidual has stride 1 or 2.")
        self.use_res_connect = stride == 1 and in_ch == out_ch
        act = nn.Hardswish if activation == "HS" else nn.ReLU
        layers: list[nn.Module] = []
        chain: list[tuple[int, str]] = []  # (index in self.block, role) of each conv-BN(-act) layer
        if expanded != in_ch:
            chain.append((len(layers), "expand"))
            layers.append(Conv2dNormActivation(in_ch, expanded, kernel_size=1, norm_layer=_norm, activation_layer=act))
        chain.append((len(layers), "dw"))
        layers.append(Conv2dNormActivation(expanded, expanded, kernel_size=kernel, stride=stride, groups=expanded,
                                           norm_layer=_norm, activation_layer=act))
        if use_se:
            if td is None:
                layers.append(SqueezeExcitation(expanded, _make_divisible(expanded // 4, 8),
                                                scale_activation=nn.Hardsigmoid))
            else:  # TD replaces SE; the placeholder keeps torchvision's index of the projection
                layers.append(nn.Identity())
        chain.append((len(layers), "project"))
        layers.append(Conv2dNormActivation(expanded, out_ch, kernel_size=1, norm_layer=_norm, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = out_ch
        self._is_cn = stride > 1
        self._chain = tuple(chain)
        if td is not None:
            if td.m not in MOBILENET_M or td.m > len(chain):
                raise ValueError(
                    f"m={td.m}: a MobileNetV3 TD block supports feedback distance m in "
                    f"{tuple(m for m in MOBILENET_M if m <= len(chain))} (1: bottom = projection input, "
                    "2: depthwise input, 3: block input, 0: the top map)."
                )
            td.validate(len(chain), "MobileNetV3 InvertedResidual")
            self.td_steps = td.steps
            self.td_m = td.m
            first = len(chain) - td.m if td.m else len(chain)
            rerun = [f"{role}_bn" for _, role in chain[first:]]
            per_step_norms(self, rerun, td.steps, lambda name: _norm(self._layer(name[:-3])[1].num_features))
            bottom_channels = {0: out_ch, 1: expanded, 2: expanded, 3: in_ch}[td.m]
            self.RA_block = TDAttention(out_ch, bottom_channels, td.attention, td.reduction, td.order)

    def _layer(self, role: str) -> nn.Module:
        return self.block[{r: i for i, r in self._chain}[role]]

    def _run(self, x: Tensor, start: int, k: int) -> tuple[Tensor, Tensor | None]:
        """Run the conv chain from position ``start`` with the BNs of pass k; returns (top, bottom of pass 0)."""
        bottom = None
        first = len(self._chain) - self.td_m if self.td_m else None
        for pos, (idx, role) in enumerate(self._chain[start:], start):
            if pos == first:
                bottom = x
            layer = self.block[idx]
            x = layer[0](x)
            x = layer[1](x) if k == 0 else getattr(self, f"{role}_bn_{k}")(x)
            if len(layer) > 2:
                x = layer[2](x)
        return x, bottom

    def forward(self, x: Tensor, steps: int | None = None) -> Tensor:
        if self.td_steps is None:
            result = self.block(x)
            if self.use_res_connect:
                result += x
            return result
        steps = check_steps(steps, self.td_steps, type(self).__name__)
        top, bottom = self._run(x, 0, 0)
        start = len(self._chain) - self.td_m
        top = run_td_passes(self, top, bottom, steps, lambda b, k: self._run(b, start, k)[0])
        return top + x if self.use_res_connect else top


class MobileNetV3(SteppedModel):
    """torchvision-layout MobileNetV3-Large; with ``td`` its last three blocks are TD blocks (SE removed)."""

    def __init__(self, num_classes: int = 1000, td: TDConfig | None = None, width_mult: float = 1.0,
                 dropout: float = 0.2, in_chans: int = 3) -> None:
        from torchvision.ops.misc import Conv2dNormActivation

        super().__init__()
        self.td = td

        def ch(c: int) -> int:
            return _make_divisible(c * width_mult, 8)

        first = ch(LARGE_CONFIG[0][0])
        layers: list[nn.Module] = [Conv2dNormActivation(in_chans, first, kernel_size=3, stride=2,
                                                        norm_layer=_norm, activation_layer=nn.Hardswish)]
        td_from = len(LARGE_CONFIG) - NUM_LAST_BLOCKS
        for i, (cin, k, exp, cout, se, act, stride) in enumerate(LARGE_CONFIG):
            layers.append(InvertedResidual(ch(cin), k, ch(exp), ch(cout), se, act, stride,
                                           td if i >= td_from else None))
        last_in = ch(LARGE_CONFIG[-1][3])
        last_out = 6 * last_in
        layers.append(Conv2dNormActivation(last_in, last_out, kernel_size=1, norm_layer=_norm,
                                           activation_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = last_out
        self.classifier = nn.Sequential(
            nn.Linear(last_out, LAST_CHANNEL), nn.Hardswish(inplace=True), nn.Dropout(p=dropout, inplace=True),
            nn.Linear(LAST_CHANNEL, num_classes),
        )
        self._stage_start = len(self.features) - 1 - NUM_LAST_BLOCKS
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out")
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
            elif isinstance(mod, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.Linear):
                nn.init.normal_(mod.weight, 0, 0.01)
                nn.init.zeros_(mod.bias)

    def forward_trunk(self, x: Tensor) -> Tensor:
        return self.features[: self._stage_start](x)

    def stage_blocks(self) -> list[nn.Module]:
        return list(self.features[self._stage_start:])

    def get_classifier(self) -> nn.Linear:
        return self.classifier[-1]

    def forward_head(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    @property
    def feature_layer(self) -> str:
        """Name of the module that feeds global pooling + the classifier (Grad-CAM's usual target)."""
        return f"features.{len(self.features) - 1}"


register(ModelSpec("mobilenetv3_large", MobileNetV3, {}, description="MobileNetV3-Large (torchvision layout)"))
register(ModelSpec("mobilenetv3_large_tdjoint", MobileNetV3, {}, TDConfig(2, 1, "joint"),
                   "TD-MobileNetV3-Large, joint attention (t=2, m=1) replacing SE in the final three blocks"))
