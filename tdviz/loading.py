"""Which model a command runs: a name, a checkpoint, both, or the built-in demo model; and, for the
commands that compare several, a distinct label and the identity of each one's weights."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .checkpoints import load_weights, model_from_checkpoint
from .errors import TdvizError
from .models.base import model_num_classes
from .models.demo_zoo import DEMO_MODELS, load_demo_model
from .models.registry import create_model
from .outputs import unique_names

DEFAULT_DEMO_MODEL = "demo_resnet_tdjoint"


def resolve_model(name: str | None, weights: str | None, ema: bool = False,
                  num_classes: int | None = None) -> tuple[nn.Module, str]:
    """(model in eval mode, a note saying where its weights came from).

    No name and no weights: the shipped ``demo_resnet_tdjoint``. A demo name alone: its shipped
    weights. A checkpoint alone: the registered model that fits it. A name and a checkpoint: that
    model, loaded strictly. A non-demo name alone: random weights (the note says so).
    ``num_classes``: the classifier's size (a fine-tuned 10- or 200-class checkpoint), where the
    model is built from its name; a checkpoint alone must have that many.
    """
    if num_classes is not None and num_classes < 1:
        raise TdvizError(f"--num-classes {num_classes} is not a class count: pass 1 or more.")
    if name is None and weights is None:
        name = DEFAULT_DEMO_MODEL
    if weights is None and name in DEMO_MODELS:
        model = load_demo_model(name)
        _check_classes(model, num_classes, f"{name}'s shipped weights")
        return model, f"{name} (shipped demo weights)"
    extra = {} if num_classes is None else {"num_classes": num_classes}
    if weights is None:
        return create_model(name, **extra).eval(), f"{name} with RANDOM weights (pass --weights to load a checkpoint)"
    if name is None:
        model = model_from_checkpoint(weights, ema=ema)
        _check_classes(model, num_classes, f"checkpoint {weights!r}")
        return model.eval(), f"{model.tdviz_name} from {weights}"
    model = create_model(name, **extra)
    load_weights(model, weights, ema=ema)
    return model.eval(), f"{name} from {weights}"


def _check_classes(model: nn.Module, num_classes: int | None, what: str) -> None:
    have = model_num_classes(model)
    if num_classes is not None and have is not None and have != num_classes:
        raise TdvizError(f"--num-classes {num_classes} does not match {what}, which scores {have} classes: "
                         f"drop --num-classes or pass --num-classes {have}.")


def state_digest(model: nn.Module) -> str:
    """SHA-256 of a model's state dict (names, dtypes, shapes and bytes, in name order): the same
    weights give the same digest whatever file or format they were loaded from."""
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"{key}|{t.dtype}|{tuple(value.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass(frozen=True)
class ModelSource:
    """Where one of several models came from: its registry name, checkpoint (``None``: shipped
    demo weights or random ones), a note for people and the digest of the weights it holds."""

    name: str
    weights: str | None
    note: str
    digest: str


@dataclass
class ModelSet:
    """Models to compare, each under a distinct label (a name given once is its own label; the same
    name with several checkpoints becomes ``name@checkpoint``), in the order given."""

    models: dict[str, nn.Module] = field(default_factory=dict)
    sources: dict[str, ModelSource] = field(default_factory=dict)


def model_labels(names: list[str], weights: list[str | None]) -> list[str]:
    """Distinct labels: the name alone where it is given once, else ``name@<checkpoint file>``
    (``@<folder>/<file>`` where file names repeat too), numbered when even that repeats."""
    labels = []
    for name, w in zip(names, weights):
        if names.count(name) == 1:
            labels.append(name)
            continue
        if w is None:
            labels.append(f"{name}@shipped" if name in DEMO_MODELS else f"{name}@random")
            continue
        same = [x for n, x in zip(names, weights) if n == name and x is not None]
        tail = Path(w).name if sum(Path(x).name == Path(w).name for x in same) == 1 else \
            "/".join(Path(w).parts[-2:])
        labels.append(f"{name}@{tail}")
    return unique_names(labels)


def resolve_models(names: list[str] | None, weights: list[str] | None, default: list[str] | None = None,
                   device: str | None = None, num_classes: int | None = None, ema: bool = False) -> ModelSet:
    """Several models by name, each with its checkpoint (``weights`` in the same order, or none);
    ``default`` names when none are given (the demo zoo for most commands; checkpoints without
    names: the model each one fits). Every entry is kept,
    also when a name repeats (two checkpoints of one architecture are two models); ``num_classes``
    as in :func:`resolve_model`, for every model."""
    if not names and weights:  # checkpoints alone: each one's model is inferred from it
        resolved = [resolve_model(None, w, ema, num_classes) for w in weights]
        names = [m.tdviz_name for m, _ in resolved]
    else:
        names = list(names or default or DEMO_MODELS)
        resolved = None
    if weights and len(weights) != len(names):
        raise TdvizError(f"Got {len(weights)} --weights for {len(names)} --model: give one checkpoint per model.")
    files = list(weights) if weights else [None] * len(names)
    out = ModelSet()
    for i, (label, name, w) in enumerate(zip(model_labels(names, files), names, files)):
        model, note = resolved[i] if resolved else resolve_model(name, w, ema, num_classes)
        out.models[label] = model.to(device) if device else model
        out.sources[label] = ModelSource(name, w, note, state_digest(model))
    return out
