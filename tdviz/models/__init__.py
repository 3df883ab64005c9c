"""tdviz's model zoo: TD models and their baselines."""

from . import convnext, demo_zoo, mobilenetv3  # noqa: F401  (registers their names)
from .registry import ModelSpec, create_model, get_spec, list_models, register

__all__ = ["ModelSpec", "create_model", "get_spec", "list_models", "register"]
