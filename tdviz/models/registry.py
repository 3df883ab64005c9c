"""Model names -> builders and records, with overrides (``steps=``, ``m=``, ``attention=``,
``num_classes=`` ...). Each model family registers its own names (this module imports none)."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from torch import nn

from ..errors import TdvizError
from .record import ModelRecord
from .td import TDConfig

#: Overrides that change the TD settings of a TD model.
TD_OVERRIDES = ("steps", "m", "attention", "reduction", "order")


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, default arguments, TD settings, a one-line description
    and its :class:`~tdviz.models.record.ModelRecord` (input, classes, feature layer)."""

    name: str
    builder: Callable[..., nn.Module]
    kwargs: dict = field(default_factory=dict)
    td: TDConfig | None = None
    description: str = ""
    record: ModelRecord = field(default_factory=ModelRecord)

    @property
    def is_td(self) -> bool:
        return self.td is not None

    @property
    def class_names(self) -> tuple[str, ...] | None:
        return self.record.class_names


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
    if "num_classes" in allowed and "num_classes" not in kwargs:
        kwargs["num_classes"] = spec.record.num_classes  # the record is where the class count lives
    model = spec.builder(**kwargs)
    model.tdviz_name = name
    model.tdviz_record = spec.record.for_built(model)
    if model.tdviz_record.class_names is not None:
        model.class_names = list(model.tdviz_record.class_names)
    return model
