"""Model size and cost: parameter counts (as the paper's Table 1) and multiply-accumulates."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Learnable parameters, without BN buffers (the paper's "Param." column)."""
    return sum(p.numel() for p in model.parameters())


def count_gmacs(model: nn.Module, size: int = 224) -> float:
    """Giga multiply-accumulates of one forward at ``size``², counted by torch's flop counter.

    The paper's "FLOPs" column counts multiply-accumulates, so this is comparable with it
    (torch counts 2 FLOPs per MAC; this returns FLOPs / 2).
    """
    param = next(model.parameters())
    x = torch.zeros(1, 3, size, size, dtype=param.dtype, device=param.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2e9


@dataclass
class ModelRow:
    """One line of `tdviz models`."""

    name: str
    params: int
    gmacs: float
    steps: int
    description: str


def describe_models(names: list[str] | None = None, size: int = 224) -> list[ModelRow]:
    """Parameter count, GMACs and steps of registered models (built on the meta device: no memory, fast)."""
    from .models.registry import create_model, get_spec, list_models

    rows = []
    for name in names or list_models():
        with torch.device("meta"):
            model = create_model(name)
        steps = model.num_steps if hasattr(model, "num_steps") else 1
        rows.append(ModelRow(name, count_parameters(model), count_gmacs(model, size), steps,
                             get_spec(name).description))
    return rows
