"""tdviz: see and measure what top-down attention (TDAM) does inside a CNN.

Public API (stable; scripts outside the repo call these names):
``create_model``, ``load_weights``, ``run_steps``, ``step_cams``, ``list_models``, ``most_confident_step``.
"""

from .cam import StepCams, searchlight_maps, step_cams
from .checkpoints import CheckpointError, load_weights
from .complexity import count_gmacs, count_parameters, describe_models
from .errors import TdvizError
from .models import create_model, get_spec, list_models
from .models.timm_compat import register_with_timm_when_imported
from .steps import StepOutputs, most_confident_step, run_steps

register_with_timm_when_imported()

__version__ = "0.1.0"

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
