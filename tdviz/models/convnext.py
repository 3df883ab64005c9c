"""ConvNeXt with TD blocks in its last two stages (TDAM, ECCV 2022, sec. 4: "for ConvNeXt, we apply at
blocks of stages 3 and 4").

Parameter names follow Facebook Research's original ``convnext.py`` (``downsample_layers.<i>.<j>``,
``stages.<i>.<j>.{dwconv,norm,pwconv1,pwconv2,gamma}``, ``norm``, ``head``), which is also the plain
naming of the authors' ``tdconvnext.py``; so FB's released checkpoints (``checkpoint["model"]``) and the
authors' TD-ConvNeXt state dicts load with ``strict=True``. torchvision's and timm's ConvNeXt use other
names; :func:`convert_state_dict` maps their state dicts to this naming.

TD block, as in the authors' ``tdconvnext.py``:

* the top map is the output of ``pwconv2`` (before the layer scale ``gamma``, drop-path and the
  residual add); the bottom map is the input of the first re-run layer:

  - m = 1: the GELU output (4 x dim channels); only ``pwconv2`` is re-run;
  - m = 2: the LayerNorm output (dim channels); ``pwconv1``, GELU and ``pwconv2`` are re-run.

  These are the only feedback distances the authors implement for ConvNeXt (their bottom-channel
  table mentions m = 0 and 3 but their forward has no m = 0/3 path); other values raise ValueError.
* no per-step norms: the re-run layers contain no norm (the authors' ``use_bnt`` is a no-op here);
* the TD module is ``RA_block`` (``RA_block.Ug_top_mlp.0``, ``RA_block.Ug_bottom_mlp.0``,
  ``RA_block.Ug_mlp.0`` for joint attention), registered after the block's plain modules;
* T passes, attention between passes; ``gamma``, drop-path and the residual add use the last pass.

Defaults: the authors' training script ``td_convnext_main.py`` builds TD-ConvNeXt with
``--time_steps 2 --mdist 1`` and joint attention at every block of stages 2 and 3 (0-based), so
``convnext_tiny_tdjoint`` is t=2, m=1 (their model constructor's own defaults, t=3 and m=2, are always
overridden by that script).

Steps: stem + stages 0..2 are the trunk; ``downsample_layers[3]`` and the blocks of ``stages[3]`` are
re-run per computation step (the authors' ``forward_features_over_t``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import SteppedModel
from .registry import ModelSpec, register
from .td import TDAttention, TDBlock, TDConfig, check_steps

#: Feedback distances the authors' ConvNeXt TD block implements.
CONVNEXT_M = (1, 2)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (FB's ``LayerNorm(data_format="channels_first")``)."""

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Block(TDBlock):
    """ConvNeXt block: dwconv 7x7 -> LayerNorm -> pwconv1 -> GELU -> pwconv2 -> gamma, + input.

    With ``td`` it is a TD block (see the module docstring); ``forward(x, steps=t)`` runs t <= T steps.
    """

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale_init_value: float = 1e-6,
                 td: TDConfig | None = None) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = (nn.Parameter(layer_scale_init_value * torch.ones(dim))
                      if layer_scale_init_value > 0 else None)
        if drop_path > 0:
            from torchvision.ops import (
                StochasticDepth,  # imported only when training with drop-path
            )

            self.drop_path = StochasticDepth(drop_path, "row")
        else:
            self.drop_path = nn.Identity()
        if td is not None:
            if td.m not in CONVNEXT_M:
                raise ValueError(
                    f"m={td.m}: a ConvNeXt TD block supports feedback distance m in {CONVNEXT_M} "
                    "(1: bottom = GELU output, pwconv2 re-run; 2: bottom = LayerNorm output, "
                    "pwconv1/GELU/pwconv2 re-run), as in the authors' tdconvnext.py."
                )
            td.validate(max(CONVNEXT_M), "ConvNeXt block")
            self.td_steps = td.steps
            self.td_m = td.m
            bottom_channels = 4 * dim if td.m == 1 else dim
            self.RA_block = TDAttention(dim, bottom_channels, td.attention, td.reduction, td.order)

    def _rerun(self, bottom: Tensor) -> Tensor:
        """The re-run layers from the bottom map (channels-last) to the top map (channels-last)."""
        if self.td_m == 2:
            bottom = self.act(self.pwconv1(bottom))
        return self.pwconv2(bottom)

    def forward(self, x: Tensor, steps: int | None = None) -> Tensor:
        shortcut = x
        x = self.norm(self.dwconv(x).permute(0, 2, 3, 1))  # (N, C, H, W) -> (N, H, W, C)
        if self.td_steps is None:
            x = self.pwconv2(self.act(self.pwconv1(x)))
        else:
            steps = check_steps(steps, self.td_steps, type(self).__name__)
            bottom = x if self.td_m == 2 else self.act(self.pwconv1(x))
            x = self._rerun(bottom)
            for k in range(1, steps):
                bottom = self.RA_block(x.permute(0, 3, 1, 2), bottom.permute(0, 3, 1, 2), step=k)
                bottom = bottom.permute(0, 2, 3, 1)
                x = self._rerun(bottom)
        if self.gamma is not None:
            x = self.gamma * x
        return shortcut + self.drop_path(x.permute(0, 3, 1, 2))


class ConvNeXt(SteppedModel):
    """ConvNeXt (FB layout) whose chosen blocks are TD blocks.

    ``td_blocks`` maps a 0-based stage index to the block indices that get TD (indices past a stage's
    depth are ignored, as in the authors' code); ``None`` means every block of the last two stages.
    """

    def __init__(self, num_classes: int = 1000, td: TDConfig | None = None, drop_path_rate: float = 0.0,
                 depths: Sequence[int] = (3, 3, 9, 3), dims: Sequence[int] = (96, 192, 384, 768),
                 td_blocks: Mapping[int, Sequence[int]] | None = None, in_chans: int = 3,
                 layer_scale_init_value: float = 1e-6, head_init_scale: float = 1.0) -> None:
        super().__init__()
        if len(depths) != len(dims) or len(depths) < 2:
            raise ValueError(f"depths={tuple(depths)} and dims={tuple(dims)} must have one entry per stage (>= 2).")
        n = len(depths)
        if td_blocks is None:
            td_blocks = {n - 2: range(depths[n - 2]), n - 1: range(depths[n - 1])}
        self.td = td
        self.td_blocks = {int(s): sorted({i for i in v if i < depths[int(s)]}) for s, v in td_blocks.items()}
        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(nn.Sequential(
            nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0], eps=1e-6)))
        for i in range(n - 1):
            self.downsample_layers.append(nn.Sequential(
                LayerNorm2d(dims[i], eps=1e-6), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)))
        # built on the CPU even inside `with torch.device("meta")` (`tdviz models`, checkpoint matching)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.stages = nn.ModuleList()
        cur = 0
        for s, (depth, dim) in enumerate(zip(depths, dims)):
            self.stages.append(nn.Sequential(*[
                Block(dim, rates[cur + j], layer_scale_init_value,
                      td if td is not None and j in self.td_blocks.get(s, ()) else None)
                for j in range(depth)
            ]))
            cur += depth
        self.num_stages = n
        self.num_features = dims[-1]
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)
        self.apply(self._init_weights)
        self.head.weight.data.mul_(head_init_scale)
        self.head.bias.data.mul_(head_init_scale)

    @staticmethod
    def _init_weights(mod: nn.Module) -> None:
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(mod.weight, std=0.02)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)

    def forward_trunk(self, x: Tensor) -> Tensor:
        for i in range(self.num_stages - 1):
            x = self.stages[i](self.downsample_layers[i](x))
        return x

    def stage_blocks(self) -> list[nn.Module]:
        return [self.downsample_layers[-1], *self.stages[-1]]

    def get_classifier(self) -> nn.Linear:
        return self.head

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(self.norm(x.mean((-2, -1))))

    @property
    def feature_layer(self) -> str:
        """Name of the module whose output feeds global pooling + the head (Grad-CAM's usual target).

        The last block of the last stage, not ``stages.3`` itself: ``forward_stage`` calls the stage's
        blocks one by one, so a hook on the ``stages.3`` container would never fire.
        """
        return f"stages.{self.num_stages - 1}.{len(self.stages[-1]) - 1}"


def convert_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map a torchvision or timm ConvNeXt state dict to FB's (this module's) naming.

    A state dict already in FB naming (or an FB checkpoint's ``"model"`` entry) is returned as is.
    """
    keys = list(state_dict)
    out: dict[str, Tensor] = {}
    if any(k.startswith("features.") for k in keys):  # torchvision
        for k, v in state_dict.items():
            parts = k.split(".")
            if parts[0] == "classifier":
                out[("norm." if parts[1] == "0" else "head.") + parts[2]] = v
                continue
            idx = int(parts[1])
            if idx % 2 == 0:  # features.0 = stem, features.2/4/6 = downsample layers
                out[f"downsample_layers.{idx // 2}.{'.'.join(parts[2:])}"] = v
                continue
            stage, blk = (idx - 1) // 2, parts[2]
            if parts[3] == "layer_scale":
                out[f"stages.{stage}.{blk}.gamma"] = v.reshape(-1)
                continue
            name = {"0": "dwconv", "2": "norm", "3": "pwconv1", "5": "pwconv2"}[parts[4]]
            out[f"stages.{stage}.{blk}.{name}.{parts[5]}"] = v
        return out
    if any(k.startswith("stem.") for k in keys):  # timm
        names = {"conv_dw": "dwconv", "norm": "norm", "mlp.fc1": "pwconv1", "mlp.fc2": "pwconv2"}
        for k, v in state_dict.items():
            parts = k.split(".")
            if parts[0] == "stem":
                out[f"downsample_layers.0.{'.'.join(parts[1:])}"] = v
            elif parts[0] == "head":
                out[("norm." if parts[1] == "norm" else "head.") + parts[2]] = v
            elif parts[2] == "downsample":
                out[f"downsample_layers.{parts[1]}.{'.'.join(parts[3:])}"] = v
            elif parts[4] == "gamma":
                out[f"stages.{parts[1]}.{parts[3]}.gamma"] = v
            else:
                layer = ".".join(parts[4:-1])
                out[f"stages.{parts[1]}.{parts[3]}.{names[layer]}.{parts[-1]}"] = v
        return out
    return dict(state_dict)


_TINY = {"depths": (3, 3, 9, 3), "dims": (96, 192, 384, 768)}

register(ModelSpec("convnext_tiny", ConvNeXt, _TINY, description="ConvNeXt-Tiny (FB/authors' layout)"))
register(ModelSpec("convnext_tiny_tdjoint", ConvNeXt, _TINY, TDConfig(2, 1, "joint"),
                   "TD-ConvNeXt-Tiny, joint attention (t=2, m=1) at every block of stages 3 and 4"))
