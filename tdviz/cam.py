"""Class activation maps at every computation step.

grad-cam (pytorch-grad-cam) runs on "the model at step t" (:class:`StepView`) like on any model,
so every one of its methods works per step. Two faster paths give the same maps:

* **closed form**: at the layer that feeds global average pooling + a linear classifier, the
  gradient of class c's logit is ``W[c] / (h*w)`` everywhere, so no backward pass is needed
  (Grad-CAM then equals ReLU(CAM) up to a positive scale);
* **one forward**: elsewhere, one forward of every step keeps the layer's activations and the
  gradients are taken with ``torch.autograd.grad`` only down to that layer, class by class.

Either way the weighting itself is grad-cam's own ``get_cam_image`` (Grad-CAM itself is done in
torch on the model's device), and maps are normalized exactly as grad-cam does: per map
``m - min``, ``/ (1e-7 + max)``, bilinear resize to the input size (= ``cv2.resize``), ReLU,
and the same min-max once more.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import TdvizError
from .models.base import SteppedModel
from .steps import _eval_mode, _resolve_layers, run_steps

#: grad-cam methods by the names tdviz accepts (lower case; "gradcam++" = GradCAMPlusPlus) -> class
#: name in pytorch_grad_cam. grad-cam is imported on first use: its package import costs ~2 s.
METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "gradcamplusplus": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "gradcamelementwise": "GradCAMElementWise",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
    "scorecam": "ScoreCAM",
    "ablationcam": "AblationCAM",
    "kpca_cam": "KPCA_CAM",
    "randomcam": "RandomCAM",
    "shapleycam": "ShapleyCAM",
    "fem": "FEM",
}


#: grad-cam methods that cannot run on tdviz's models, and why (the error a user gets)
UNSUPPORTED_METHODS: dict[str, str] = {
    "fullgrad": "grad-cam's FullGrad needs every layer with a bias to run exactly once per forward, in the order "
                "the modules are registered; ResNet shortcuts run before their block and TD blocks re-run their "
                "convolutions, so its bias gradients would be paired with the wrong layers",
}


def check_method(method: str) -> str:
    """The method name in lower case, or one sentence saying why it cannot be used."""
    name = method.lower()
    if name in UNSUPPORTED_METHODS:
        raise TdvizError(f"CAM method {method!r} cannot run on tdviz's models ({UNSUPPORTED_METHODS[name]}): "
                         "choose another, e.g. gradcam, gradcam++ or layercam.")
    if name not in METHODS:
        raise TdvizError(f"CAM method {method!r} is unknown; choose one of {', '.join(sorted(METHODS))}.")
    return name


def method_class(method: str) -> type:
    """The pytorch_grad_cam class of a method name."""
    return getattr(importlib.import_module("pytorch_grad_cam"), METHODS[method])


def _targets(class_ids: Tensor) -> list:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    return [ClassifierOutputTarget(int(c)) for c in class_ids]
#: methods whose map depends only on the layer's activations and gradients (fast path possible)
GRADIENT_METHODS = {"gradcam", "gradcam++", "gradcamplusplus", "xgradcam", "layercam", "hirescam",
                    "gradcamelementwise", "eigengradcam"}
ACTIVATION_METHODS = {"eigencam"}


@dataclass
class StepCams:
    """Maps of ``step_cams``.

    * ``maps``: [B, T, K, H, W] in [0, 1], normalized as grad-cam, at the input's resolution;
    * ``raw``: [B, T, K, h, w] ReLU'd maps at the layer's resolution before any normalization
      (``None`` for methods that run through grad-cam as a whole);
    * ``class_ids``: [B, T, K] the class of each map; ``scores``: [B, T, K] its softmax
      probability at that step; ``logits``: [B, T, C];
    * ``path``: "closed-form", "one-forward" or "grad-cam" (how the maps were computed).
    """

    maps: Tensor
    raw: Tensor | None
    class_ids: Tensor
    scores: Tensor
    logits: Tensor
    method: str
    layer: str
    path: str

    @property
    def num_steps(self) -> int:
        return self.maps.shape[1]


class StepView(nn.Module):
    """The model at computation step t, as a plain module (trunk, last stage at t steps, head)."""

    def __init__(self, model: nn.Module, step: int) -> None:
        super().__init__()
        self.model = model
        self.step = step

    def forward(self, x: Tensor) -> Tensor:
        m = self.model
        if not isinstance(m, SteppedModel):
            return m(x)
        return m.forward_head(m.forward_stage(m.forward_trunk(x), steps=self.step))


def normalize_maps(raw: Tensor, size: tuple[int, int]) -> Tensor:
    """grad-cam's normalization of maps [N, h, w] -> [N, H, W] (``scale_cam_image`` twice)."""
    m = raw.float()
    m = m - m.amin((-2, -1), keepdim=True)
    m = m / (1e-7 + m.amax((-2, -1), keepdim=True))
    m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0].clamp_min(0)
    m = m - m.amin((-2, -1), keepdim=True)
    return m / (1e-7 + m.amax((-2, -1), keepdim=True))


def default_layer(model: nn.Module) -> str:
    """The layer Grad-CAM usually targets: the one that feeds global pooling and the classifier."""
    from .models.record import model_record

    layer = model_record(model).feature_layer
    if layer is None:
        raise TdvizError(f"{type(model).__name__} names no default CAM layer: pass layer=... (e.g. --layer layer4).")
    return layer


def _linear_head(model: nn.Module, module: nn.Module) -> nn.Linear | None:
    """The classifier when ``module`` feeds GAP + a linear layer directly (closed-form Grad-CAM)."""
    head = getattr(model, "gap_linear_head", None)
    if head is None:
        return None
    feature = _resolve_layers(model, [model.feature_layer])[model.feature_layer]
    return head() if module is feature else None


def select_classes(logits: Tensor, classes: str | Sequence[int], k: int, labels: Tensor | None) -> Tensor:
    """Class ids [B, T, K] for the maps: ``"topk"`` per step, ``"last"`` (top-k of the last step at
    every step), ``"gt"`` (``labels``), or explicit class ids shared by every image."""
    b, t, c = logits.shape
    if isinstance(classes, str):
        if classes in ("topk", "top"):
            if not 1 <= k <= c:
                raise TdvizError(f"topk={k} is outside 1..{c} (the model has {c} classes).")
            return logits.topk(k, -1).indices
        if classes == "last":
            if not 1 <= k <= c:
                raise TdvizError(f"topk={k} is outside 1..{c} (the model has {c} classes).")
            return logits[:, -1].topk(k, -1).indices[:, None].expand(b, t, k)
        if classes in ("gt", "label", "labels"):
            if labels is None:
                raise TdvizError("classes='gt' needs the ground-truth labels (labels=...).")
            labels = torch.as_tensor(labels, device=logits.device).reshape(b, 1, 1)
            return labels.expand(b, t, 1)
        raise TdvizError(f"classes={classes!r} is not one of 'topk', 'last', 'gt' or a list of class ids.")
    ids = torch.as_tensor(list(classes), device=logits.device, dtype=torch.long)
    if ids.numel() == 0 or int(ids.min()) < 0 or int(ids.max()) >= c:
        raise TdvizError(f"Class ids {list(classes)} must lie in 0..{c - 1}.")
    return ids.reshape(1, 1, -1).expand(b, t, ids.numel())


@contextlib.contextmanager
def _method_instance(method: str, view: nn.Module, module: nn.Module):
    """A grad-cam method object whose weighting functions we call; its hooks are removed at once."""
    cam = method_class(method)(model=view, target_layers=[module])
    cam.activations_and_grads.release()
    try:
        yield cam
    finally:
        cam.activations_and_grads.release()


def step_cams(model: nn.Module, images: Tensor, layer: str | None = None, method: str = "gradcam",
              classes: str | Sequence[int] = "topk", k: int = 1, labels: Tensor | None = None,
              fast: bool = True, append_labels: Tensor | None = None, normalize: bool = True) -> StepCams:
    """CAMs of ``images`` [B, 3, H, W] for every computation step of ``model``.

    ``layer`` defaults to the model's feature layer; ``method`` is any grad-cam method name
    (:data:`METHODS`); ``classes``/``k``/``labels`` choose the maps' classes (see
    :func:`select_classes`). ``fast=False`` forces grad-cam itself for every step and class.
    ``append_labels`` [B] adds one more map per step for these classes (e.g. the ground truth
    next to the top-5), from the same forward pass. ``normalize=False`` skips the input-size
    maps (``maps`` is then ``None``) when only ``raw`` is needed (fast paths only).
    """
    method = check_method(method)
    layer = layer or default_layer(model)
    module = _resolve_layers(model, [layer])[layer]
    size = tuple(images.shape[-2:])
    fast_ok = fast and (method in GRADIENT_METHODS or method in ACTIVATION_METHODS)
    pick = lambda logits: _with_labels(select_classes(logits, classes, k, labels), append_labels)
    if fast_ok:
        return _fast_cams(model, images, layer, module, method, pick, size, normalize)
    return _gradcam_cams(model, images, layer, module, method, pick, size)


def _check_feature_map(model: nn.Module, layer: str, acts: Tensor) -> None:
    """A CAM needs a layer whose output is a feature map [B, C, H, W] (here [B, T, C, H, W])."""
    if acts.dim() != 5:
        name = getattr(model, "tdviz_name", type(model).__name__)
        raise TdvizError(f"Layer {layer!r} of {name} gives outputs of shape {tuple(acts.shape[2:])} per image, not a "
                         f"feature map [C, H, W]: pick a convolutional layer, e.g. {default_layer(model)!r}.")


def _with_labels(cls: Tensor, extra: Tensor | None) -> Tensor:
    if extra is None:
        return cls
    b, t, _ = cls.shape
    return torch.cat([cls, extra.to(cls.device).reshape(b, 1, 1).expand(b, t, 1)], 2)


def _fast_cams(model, images, layer, module, method, pick, size, normalize=True) -> StepCams:
    head = _linear_head(model, module) if method in GRADIENT_METHODS else None
    need_autograd = method in GRADIENT_METHODS and head is None
    out = run_steps(model, images, layers=[layer], grad=need_autograd)
    _check_feature_map(model, layer, out.activations[layer])
    logits = out.logits.detach()
    cls = pick(logits)
    b, t, kk = cls.shape
    raws = []
    with _eval_mode(model), contextlib.ExitStack() as stack:
        inst = None if method == "gradcam" else stack.enter_context(_method_instance(method, StepView(model, 1), module))
        for step in range(t):
            acts = out.step_tensors[layer][step]
            per_class = []
            for slot in range(kk):
                c = cls[:, step, slot]
                if head is not None:
                    h, w = acts.shape[-2:]
                    grads = (head.weight[c] / (h * w))[:, :, None, None].expand_as(acts).detach()
                elif need_autograd:
                    target = out.step_logits[step].gather(1, c[:, None]).sum()
                    (grads,) = torch.autograd.grad(target, acts, retain_graph=True)
                else:
                    grads = None
                per_class.append(_weighted_map(inst, method, images, module, acts.detach(), grads, c))
            raws.append(torch.stack(per_class, 1))
    raw = torch.stack(raws, 1)  # [B, T, K, h, w]
    maps = normalize_maps(raw.flatten(0, 2), size).reshape(b, t, kk, *size) if normalize else None
    scores = logits.softmax(-1).gather(2, cls)
    path = "closed-form" if head is not None else "one-forward"
    return StepCams(maps, raw, cls, scores, logits, method, layer, path)


def _weighted_map(inst, method: str, images: Tensor, module: nn.Module, acts: Tensor, grads: Tensor | None,
                  c: Tensor) -> Tensor:
    """ReLU'd map at the layer's resolution, by grad-cam's own weighting of this method."""
    if method == "gradcam":
        weights = grads.mean((2, 3), keepdim=True)
        return (weights * acts).sum(1).clamp_min(0)
    targets = _targets(c)
    a = acts.float().cpu().numpy()
    g = None if grads is None else grads.float().cpu().numpy()
    cam = inst.get_cam_image(images, module, targets, a, g, False)
    return torch.from_numpy(np.maximum(np.asarray(cam, dtype=np.float32), 0)).to(acts.device)


def _gradcam_cams(model, images, layer, module, method, pick, size) -> StepCams:
    with torch.no_grad():
        out = run_steps(model, images, layers=[layer])
    _check_feature_map(model, layer, out.activations[layer])
    logits = out.logits
    cls = pick(logits)
    b, t, kk = cls.shape
    maps = torch.empty(b, t, kk, *size, device=images.device)
    with _eval_mode(model):
        for step in range(t):
            view = StepView(model, step + 1)
            with method_class(method)(model=view, target_layers=[module]) as cam:
                for slot in range(kk):
                    targets = _targets(cls[:, step, slot])
                    maps[:, step, slot] = torch.from_numpy(cam(input_tensor=images, targets=targets)).to(maps.device)
    scores = logits.softmax(-1).gather(2, cls)
    return StepCams(maps, None, cls, scores, logits, method, layer, "grad-cam")


def searchlight_maps(model: nn.Module, images: Tensor, size: tuple[int, int] | None = None) -> dict[str, Tensor]:
    """Each TD block's spatial searchlight maps A_t: name -> [B, T-1, H, W] (normalized as CAMs
    when ``size`` is given, raw at the block's resolution otherwise)."""
    out = run_steps(model, images)
    result = {}
    for name, passes in out.td_passes.items():
        maps = [p.spatial for p in passes if p.spatial is not None]
        if not maps:
            continue
        raw = torch.stack(maps, 1)
        if size is not None:
            b, n = raw.shape[:2]
            raw = normalize_maps(raw.flatten(0, 1), size).reshape(b, n, *size)
        result[name] = raw
    return result
