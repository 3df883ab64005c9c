"""The top-down (TD) attention module of TDAM (Jaiswal et al., ECCV 2022, section 3).

A TD block runs its convolutions for T computation steps. Between two passes, a *searchlight* S
is computed from the pooled *top* map (the block's last BN output, before the residual add) and,
for joint attention, the pooled *bottom* map (the input of the first convolution that is re-run).
S then modulates the bottom map (eqs. 6-8) and the re-run convolutions see the modulated map.

Conventions follow the authors' released code (``timm_td_resnet.py``), so their checkpoints load:

* searchlight MLP of 1x1 convolutions without bias, hidden width ``rd = C_top // r`` for both the
  top and the bottom branch (the paper writes C0/r for the bottom branch; the code uses C_top/r);
* ``A = sum_c S_c * X'_c`` uses the raw searchlight S, not sigmoid(S) (eq. 7);
* the searchlight is recomputed from scratch at every pass; each pass modulates the previous
  pass's modulated bottom map.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass

import torch
from torch import Tensor, nn

ATTENTIONS = ("joint", "top")

#: Order of the feedback operation (paper Fig. 5, right). "channel->spatial" is TDAM's own.
ORDERS = ("channel->spatial", "spatial->channel", "parallel", "channel", "spatial")


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


class TDBlock(nn.Module):
    """The contract every family's TD-capable block keeps: ``td_steps`` is its T (``None``: built
    without TD, a plain block), ``td_m`` its feedback distance, and ``forward(x, steps=None)`` runs
    ``steps`` computation steps (default T). :class:`~tdviz.models.base.SteppedModel` re-runs the
    blocks for which :func:`is_stepped_block` holds."""

    td_steps: int | None = None
    td_m: int | None = None


def is_stepped_block(module: nn.Module) -> bool:
    """Whether ``module`` is a TD block built with TD (see :class:`TDBlock`)."""
    return isinstance(module, TDBlock) and module.td_steps is not None


@dataclass
class TDPass:
    """What one attention pass of a TD block computed.

    ``searchlight`` is S_t, shape [B, C_bottom]; ``spatial`` is A_t, shape [B, H, W] of the bottom
    map (``None`` for the channel-only ablation); ``step`` is t, counted from 1 (the pass that
    prepares computation step t + 1).
    """

    step: int
    searchlight: Tensor
    spatial: Tensor | None


_RECORDER: contextvars.ContextVar[dict | None] = contextvars.ContextVar("tdviz_td_recorder", default=None)


@contextlib.contextmanager
def record_td_passes():
    """Collect every TD pass run inside the ``with`` block: yields ``{module: [TDPass, ...]}``.

    Nothing is stored on the modules, so recording never changes a model.
    """
    passes: dict[nn.Module, list[TDPass]] = {}
    token = _RECORDER.set(passes)
    try:
        yield passes
    finally:
        _RECORDER.reset(token)


class TDAttention(nn.Module):
    """Searchlight generator (eq. 4 joint, eq. 5 top) and channel/spatial modulation (eqs. 6-8).

    Attribute names (``Ug_top_mlp``, ``Ug_bottom_mlp``, ``Ug_mlp``) are those of the authors'
    ``RA_block``, so their state dicts load with ``strict=True``.
    """

    def __init__(
        self,
        top_channels: int,
        bottom_channels: int,
        attention: str = "joint",
        reduction: int = 16,
        order: str = "channel->spatial",
    ) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention={attention!r} is not one of {ATTENTIONS}.")
        if order not in ORDERS:
            raise ValueError(f"order={order!r} is not one of {ORDERS}.")
        self.attention = attention
        self.order = order
        rd = max(top_channels // reduction, 1)
        if attention == "joint":
            self.Ug_top_mlp = nn.Sequential(nn.Conv2d(top_channels, rd, 1, bias=False), nn.ReLU())
            self.Ug_bottom_mlp = nn.Sequential(nn.Conv2d(bottom_channels, rd, 1, bias=False), nn.ReLU())
            self.Ug_mlp = nn.Sequential(nn.Conv2d(2 * rd, bottom_channels, 1, bias=False))
        else:
            self.Ug_mlp = nn.Sequential(
                nn.Conv2d(top_channels, rd, 1, bias=False), nn.ReLU(), nn.Conv2d(rd, bottom_channels, 1, bias=False)
            )

    def searchlight(self, top: Tensor, bottom: Tensor) -> Tensor:
        """S_t from average-pooled top (and bottom) maps; returns [B, C_bottom]."""
        top_p = top.mean((2, 3), keepdim=True)
        if self.attention == "joint":
            bottom_p = bottom.mean((2, 3), keepdim=True)
            hidden = torch.cat([self.Ug_top_mlp(top_p), self.Ug_bottom_mlp(bottom_p)], dim=1)
            return self.Ug_mlp(hidden).flatten(1)
        return self.Ug_mlp(top_p).flatten(1)

    def modulate(self, bottom: Tensor, s: Tensor) -> tuple[Tensor, Tensor | None]:
        """att(X; S): eqs. 6-8 for the default order; returns (next bottom, spatial map A or None)."""
        s4 = s[:, :, None, None]
        gate = torch.sigmoid(s4)
        if self.order == "channel->spatial":
            scaled = bottom * gate
            a = (scaled * s4).sum(1)
            return scaled * torch.sigmoid(a)[:, None], a
        if self.order == "channel":
            return bottom * gate, None
        a = (bottom * s4).sum(1)
        spatial_gate = torch.sigmoid(a)[:, None]
        if self.order == "spatial":
            return bottom * spatial_gate, a
        if self.order == "parallel":
            return bottom * gate * spatial_gate, a
        # spatial->channel: A from the unscaled map, then the channel gate on the spatially scaled map
        return bottom * spatial_gate * gate, a

    def forward(self, top: Tensor, bottom: Tensor, step: int = 1) -> Tensor:
        """One attention pass: the modulated bottom map for the next pass (recorded if asked)."""
        s = self.searchlight(top, bottom)
        out, a = self.modulate(bottom, s)
        passes = _RECORDER.get()
        if passes is not None:
            passes.setdefault(self, []).append(TDPass(step, s, a))
        return out


def run_td_passes(block: nn.Module, top: Tensor, bottom: Tensor | None, steps: int, rerun) -> Tensor:
    """The step loop of a TD block: ``steps - 1`` attention passes, each followed by a re-run.

    ``rerun(bottom, k)`` recomputes the top map from the modulated bottom map with pass k's norms.
    With feedback distance 0 (``block.td_m == 0``) the top map itself is modulated, nothing re-run.
    """
    if block.td_m == 0:
        bottom = top
    for k in range(1, steps):
        bottom = block.RA_block(top, bottom, step=k)
        top = bottom if block.td_m == 0 else rerun(bottom, k)
    return top


def check_steps(steps: int | None, max_steps: int, where: str) -> int:
    """Validate a per-call step count against a block's T."""
    if steps is None:
        return max_steps
    if not 1 <= steps <= max_steps:
        raise ValueError(f"{where}: steps={steps} is outside 1..{max_steps} (the block was built with T={max_steps}).")
    return steps


def per_step_norms(module: nn.Module, names: list[str], steps: int, make) -> None:
    """Register ``<name>_<k>`` norm layers for k = 1..steps-1, grouped by name (bn1_1, bn1_2, bn2_1, ...)."""
    for name in names:
        for k in range(1, steps):
            setattr(module, f"{name}_{k}", make(name))


def norm_at(module: nn.Module, name: str, k: int) -> nn.Module:
    """The norm used at pass k: the base one for k = 0, ``<name>_<k>`` after that."""
    return getattr(module, name if k == 0 else f"{name}_{k}")


