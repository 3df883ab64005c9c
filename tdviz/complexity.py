"""Model size and cost: parameter counts (as the paper's Table 1) and multiply-accumulates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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


COST_TABLE = Path(__file__).resolve().parent / "data" / "model_costs.json"


def describe_models(names: list[str] | None = None, size: int = 224, measure: bool = False) -> list[ModelRow]:
    """Parameter count, GMACs and steps of registered models.

    At 224 px a name whose registry entry is still the one tdviz ships is read from the table
    ``data/model_costs.json`` (measuring all of them takes 20 s; the test suite checks the table
    against a measurement of every name); other sizes, other or re-registered entries, and
    ``measure=True`` build the model on the meta device and count."""
    from .models.registry import get_spec, list_models

    table = _cost_table() if size == 224 and not measure else {}
    rows = []
    for name in names or list_models():
        spec = get_spec(name)
        row = table.get(name)
        if row is not None and row[3] == spec_fingerprint(spec):
            params, gmacs, steps = row[:3]
        else:
            params, gmacs, steps = measure_model(name, size)
        rows.append(ModelRow(name, params, gmacs, steps, spec.description))
    return rows


def spec_fingerprint(spec) -> str:
    """What a registry entry builds (builder, arguments, TD settings), in words that do not change
    between processes: a table row is used only for the entry it was measured on."""
    def word(v) -> str:
        if isinstance(v, dict):
            return "{" + ",".join(f"{k}:{word(v[k])}" for k in sorted(v)) + "}"
        if isinstance(v, (list, tuple)):
            return "[" + ",".join(word(x) for x in v) + "]"
        if callable(v):
            return f"{getattr(v, '__module__', '')}.{getattr(v, '__qualname__', type(v).__name__)}"
        return repr(v)

    return f"{word(spec.builder)}|{word(spec.kwargs)}|{spec.td!r}|{spec.record.num_classes}"


def measure_model(name: str, size: int = 224) -> tuple[int, float, int]:
    """(parameters, GMACs at ``size``², steps) of a registered model, built on the meta device."""
    from .models.registry import create_model

    with torch.device("meta"):
        model = create_model(name)
    steps = model.num_steps if hasattr(model, "num_steps") else 1
    return count_parameters(model), count_gmacs(model, size), steps


def _cost_table() -> dict[str, tuple[int, float, int, str]]:
    if not COST_TABLE.is_file():
        return {}
    return {name: (row["params"], row["gmacs"], row["steps"], row.get("spec", ""))
            for name, row in json.loads(COST_TABLE.read_text()).items()}


def write_cost_table(path: Path = COST_TABLE) -> Path:
    """Measure every registered name at 224 px and write the table `describe_models` reads."""
    from .models.registry import get_spec

    rows = describe_models(measure=True)
    path.write_text(json.dumps({r.name: {"params": r.params, "gmacs": r.gmacs, "steps": r.steps,
                                         "spec": spec_fingerprint(get_spec(r.name))} for r in rows}, indent=1) + "\n")
    return path


if __name__ == "__main__":  # python -m tdviz.complexity: rewrite the table after changing a model
    print(write_cost_table())
