"""Model names -> builders, with overrides (``steps=``, ``m=``, ``attention=``, ``num_classes=`` ...)."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from torch import nn

from ..errors import TdvizError
from .resnet import ResNet, TDConfig

#: Overrides that change the TD settings of a TD model.
TD_OVERRIDES = ("steps", "m", "attention", "reduction", "order")


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, default arguments and a one-line description."""

    name: str
    builder: Callable[..., nn.Module]
    kwargs: dict = field(default_factory=dict)
    td: TDConfig | None = None
    description: str = ""
    class_names: tuple[str, ...] | None = None
    #: how inputs are prepared: "resize_crop" (Resize 256 + CenterCrop 224, ImageNet) or "resize" (224²)
    preprocess: str = "resize_crop"

    @property
    def is_td(self) -> bool:
        return self.td is not None


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model name (a later registration of the same name replaces it)."""
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """Every registered name, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The spec of ``name``; an unknown name raises a ValueError that lists the nearest names."""
    if name not in _REGISTRY:
        near = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f" Nearest names: {', '.join(near)}." if near else ""
        raise TdvizError(f"Unknown model {name!r}.{hint} Run `tdviz models` for the full list.")
    return _REGISTRY[name]


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered model with random weights.

    ``overrides`` may change ``num_classes`` and any builder argument, and, for TD models, the TD
    settings ``steps``, ``m``, ``attention`` (``"joint"``/``"top"``), ``reduction`` and ``order``.
    Load weights with :func:`tdviz.load_weights`.
    """
    spec = get_spec(name)
    kwargs = dict(spec.kwargs)
    td_changes = {k: overrides.pop(k) for k in TD_OVERRIDES if k in overrides}
    if td_changes:
        if not spec.is_td:
            family = sorted(n for n in _REGISTRY if n.startswith(name.split("_")[0]) and _REGISTRY[n].is_td)
            hint = f"pick a TD model such as {family[0]}" if family else "pick a TD model (`tdviz models`)"
            raise TdvizError(f"{name} has no TD blocks, so {', '.join(sorted(td_changes))} cannot be set; {hint}.")
        td_changes = {k: v for k, v in td_changes.items() if v is not None}
    if spec.is_td:
        kwargs["td"] = replace(spec.td, **td_changes)
    allowed = set(inspect.signature(spec.builder).parameters)
    unknown = set(overrides) - allowed
    if unknown:
        raise TdvizError(
            f"{name} does not take {', '.join(sorted(unknown))}; it takes "
            f"{', '.join(sorted(allowed | set(TD_OVERRIDES if spec.is_td else ())))}."
        )
    kwargs.update(overrides)
    model = spec.builder(**kwargs)
    model.tdviz_name = name
    model.tdviz_preprocess = spec.preprocess
    if spec.class_names is not None and "num_classes" not in overrides:
        model.class_names = list(spec.class_names)
    return model


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
