"""tdviz's model zoo: TD models and their baselines."""

from . import convnext, demo_zoo, mobilenetv3, resnet  # noqa: F401  (each registers its own names)
from .record import ModelRecord, model_record
from .registry import ModelSpec, create_model, get_spec, list_models, register

__all__ = ["ModelRecord", "ModelSpec", "create_model", "get_spec", "list_models", "model_record", "register"]
