"""What a model wants as input and gives as output, in one record (timm's ``pretrained_cfg``).

Every registered name carries a :class:`ModelRecord`; a built model carries its own completed copy
as ``model.tdviz_record`` (its real number of classes and feature layer). Every command takes its
preprocessing (:meth:`tdviz.images.Preprocess.for_model`), class names and CAM layer from there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from ..errors import TdvizError

__all__ = ["CROPS", "IMAGENET_MEAN", "IMAGENET_STD", "INTERPOLATIONS", "ModelRecord", "model_record"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: "resize_crop": the shorter side to ``size / crop_fraction``, then a centre crop of ``size``
#: (torchvision's and timm's evaluation); "resize": the whole image to ``size`` x ``size``
CROPS = ("resize_crop", "resize")
INTERPOLATIONS = ("bilinear", "bicubic")


@dataclass(frozen=True)
class ModelRecord:
    """How a model was trained to see images, and what it outputs.

    ``input_size`` (square), ``crop`` (:data:`CROPS`) with ``crop_fraction`` (224 / 256 = 0.875,
    torchvision's and timm's default), ``interpolation`` (antialiased), ``mean`` / ``std`` of the
    normalization, ``num_classes`` and ``class_names`` (``None``: ImageNet's for 1000 classes,
    else ``class <i>``), and ``feature_layer``, the layer feeding global pooling and the
    classifier (Grad-CAM's usual target; ``None`` until the model is built).
    """

    input_size: int = 224
    crop: str = "resize_crop"
    crop_fraction: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_classes: int = 1000
    class_names: tuple[str, ...] | None = None
    feature_layer: str | None = None

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise TdvizError(f"crop {self.crop!r} is unknown: use one of {', '.join(CROPS)}.")
        if self.interpolation not in INTERPOLATIONS:
            raise TdvizError(f"interpolation {self.interpolation!r} is unknown: use one of {', '.join(INTERPOLATIONS)}.")
        if not 0 < self.crop_fraction <= 1:
            raise TdvizError(f"crop fraction {self.crop_fraction} is outside (0, 1]: 0.875 is the usual one.")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise TdvizError(f"{len(self.class_names)} class names for {self.num_classes} classes.")

    def resize_for(self, size: int, crop_fraction: float | None = None) -> int:
        """The shorter side before the centre crop of ``size`` (``round(size / crop_fraction)``)."""
        return round(size / (crop_fraction or self.crop_fraction))

    def for_built(self, model: nn.Module) -> ModelRecord:
        """This record completed for a built ``model``: its own class count and feature layer
        (class names kept only when they still fit)."""
        classes = _classes(model, self.num_classes)
        names = self.class_names if self.class_names is not None and len(self.class_names) == classes else None
        layer = getattr(type(model), "feature_layer", None)
        layer = model.feature_layer if layer is not None else self.feature_layer
        return replace(self, num_classes=classes, class_names=names, feature_layer=layer)


def _classes(model: nn.Module, default: int) -> int:
    try:
        return int(model.get_classifier().out_features)
    except (AttributeError, NotImplementedError, TypeError):
        return default


def model_record(model: nn.Module) -> ModelRecord:
    """The record of a model: the one it was built with (:func:`tdviz.create_model`), else one
    for any other module (ImageNet preprocessing, its own ``feature_layer`` if it names one)."""
    record = getattr(model, "tdviz_record", None)
    if isinstance(record, ModelRecord):
        return record
    layer = getattr(model, "feature_layer", None)
    return ModelRecord(num_classes=_classes(model, 1000), feature_layer=layer if isinstance(layer, str) else None)
