"""tdviz: see and measure what top-down attention (TDAM) does inside a CNN.

Public API (stable; scripts outside the repo call these names):
``create_model``, ``load_weights``, ``run_steps``, ``step_cams``, ``list_models``, ``most_confident_step``.
"""

import importlib

from .errors import TdvizError
from .timm_hook import register_with_timm_when_imported

# Public names are imported on first use (PEP 562), so that ``import tdviz`` does not load torch
# in processes that need only its numpy parts (e.g. ``tdviz wsol``'s box workers).
_LAZY = {
    "StepCams": "cam", "searchlight_maps": "cam", "step_cams": "cam",
    "CheckpointError": "checkpoints", "load_weights": "checkpoints",
    "count_gmacs": "complexity", "count_parameters": "complexity", "describe_models": "complexity",
    "create_model": "models", "get_spec": "models", "list_models": "models",
    "StepOutputs": "steps", "most_confident_step": "steps", "run_steps": "steps",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tdviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


register_with_timm_when_imported()

__version__ = "0.2.0"

__all__ = [
    "CheckpointError",
    "StepCams",
    "StepOutputs",
    "TdvizError",
    "count_gmacs",
    "count_parameters",
    "create_model",
    "describe_models",
    "get_spec",
    "list_models",
    "load_weights",
    "most_confident_step",
    "run_steps",
    "searchlight_maps",
    "step_cams",
]
