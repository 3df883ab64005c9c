"""Which model a command runs: a name, a checkpoint, both, or the built-in demo model."""

from __future__ import annotations

from torch import nn

from .checkpoints import load_weights, model_from_checkpoint
from .models.demo_zoo import DEMO_MODELS, load_demo_model
from .models.registry import create_model

DEFAULT_DEMO_MODEL = "demo_resnet_tdjoint"


def resolve_model(name: str | None, weights: str | None, ema: bool = False) -> tuple[nn.Module, str]:
    """(model in eval mode, a note saying where its weights came from).

    No name and no weights: the shipped ``demo_resnet_tdjoint``. A demo name alone: its shipped
    weights. A checkpoint alone: the registered model that fits it. A name and a checkpoint: that
    model, loaded strictly. A non-demo name alone: random weights (the note says so).
    """
    if name is None and weights is None:
        return load_demo_model(DEFAULT_DEMO_MODEL), f"{DEFAULT_DEMO_MODEL} (shipped demo weights)"
    if weights is None:
        if name in DEMO_MODELS:
            return load_demo_model(name), f"{name} (shipped demo weights)"
        return create_model(name).eval(), f"{name} with RANDOM weights (pass --weights to load a checkpoint)"
    if name is None:
        model = model_from_checkpoint(weights, ema=ema)
        return model.eval(), f"{model.tdviz_name} from {weights}"
    model = create_model(name)
    load_weights(model, weights, ema=ema)
    return model.eval(), f"{name} from {weights}"


def resolve_models(names: list[str] | None, weights: list[str] | None, default: list[str] | None = None,
                   device: str | None = None) -> dict[str, nn.Module]:
    """Several models by name, each with its checkpoint (``weights`` in the same order, or none);
    ``default`` names when none are given (the demo zoo for most commands)."""
    from .errors import TdvizError

    names = list(names or default or DEMO_MODELS)
    if weights and len(weights) != len(names):
        raise TdvizError(f"Got {len(weights)} --weights for {len(names)} --model: give one checkpoint per model.")
    models = {}
    for i, name in enumerate(names):
        model, _ = resolve_model(name, weights[i] if weights else None)
        models[name] = model.to(device) if device else model
    return models
