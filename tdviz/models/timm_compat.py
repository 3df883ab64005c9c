"""Make tdviz's model names known to ``timm.create_model`` (done on ``import tdviz``).

Names timm already owns (``resnet50``, ``convnext_tiny``, ...) are left to timm; the TD and
baseline-attention names (``resnet50_tdjoint``, ``resnet50_se``, ...) are added.
"""

from __future__ import annotations

from ..timm_hook import register_with_timm_when_imported  # noqa: F401  (kept importable here)
from .registry import create_model, list_models

_TIMM_ONLY_ARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "features_only")


def _entrypoint(name: str):
    def build(pretrained: bool = False, **kwargs):
        if pretrained:
            raise ValueError(
                f"tdviz never downloads weights: create {name} with pretrained=False and load your "
                f"checkpoint with tdviz.load_weights(model, path)."
            )
        for key in _TIMM_ONLY_ARGS:
            kwargs.pop(key, None)
        return create_model(name, **kwargs)

    build.__name__ = name
    build.__qualname__ = name
    build.__module__ = __name__
    build.__doc__ = f"tdviz model {name} (see tdviz.create_model)."
    return build


def register_with_timm() -> list[str]:
    """Register every tdviz name timm lacks; returns the names added. Without timm, does nothing."""
    try:
        import timm
        from timm.models import register_model
    except ImportError:
        return []
    added = []
    for name in list_models():
        if name in timm.list_models(name):
            continue
        register_model(_entrypoint(name))
        added.append(name)
    return added
