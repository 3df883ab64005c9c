"""The Grad-CAM box rule on a batch of maps, on the maps' device (the GPU when there is one).

:func:`gradcam_rule_boxes` gives, for every map, the box that :func:`tdviz.wsol.boxes.cam_boxes`
gives (default options: pixels ``>= ratio * max``, 8-connected components, the largest by pixel
count, ties to the component whose first pixel comes first in raster order, inclusive box), from
the raw maps that :func:`tdviz.step_cams` returns, without a per-map trip through the CPU.

Connected components are labelled by propagation: every kept pixel starts with its own linear
index; each round it takes the smallest label in its 3x3 neighbourhood, hands that label to the
pixel its own label points at (a union-find "hook") and follows its label's pointer twice
(pointer jumping), until nothing changes. At that fixed point each component
carries the index of its first pixel, so the sizes, the tie rule and the boxes follow by counting.
The result equals ``cv2.connectedComponentsWithStats`` (tested); the number of rounds grows with a
component's winding length (a few tens for CAM blobs), never with the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cam import normalize_maps

__all__ = ["gradcam_rule_boxes", "gradcam_rule_masks", "largest_component_boxes"]

_CHECK_EVERY = 2  # propagation rounds between convergence checks (each check syncs with the GPU)


def largest_component_boxes(masks: Tensor) -> Tensor:
    """Inclusive box ``[x0, y0, x1, y1]`` of the largest 8-connected component of each mask.

    Args:
        masks: bool [N, H, W].

    Returns:
        int64 [N, 4]; ``-1`` in every coordinate where a mask is empty.
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {tuple(masks.shape)}")
    n, h, w = masks.shape
    hw = h * w
    if hw >= 2 ** 24:
        raise ValueError(f"maps of {h}x{w} pixels are too large for float32 labels")
    out = torch.full((n, 4), -1, dtype=torch.int64, device=masks.device)
    if n == 0:
        return out
    big = float(hw)
    index = torch.arange(hw, device=masks.device, dtype=torch.float32).view(1, h, w)
    labels = torch.where(masks, index, big)
    # Labels only decrease, so a map unchanged over a check's rounds is at its fixed point: it
    # leaves the working set, and the rounds after it cost only what the winding maps need.
    active = torch.arange(n, device=masks.device)
    work, work_masks = labels, masks
    while True:
        before = work
        for _ in range(_CHECK_EVERY):
            m = work.shape[0]
            spread = -F.max_pool2d(-work[:, None], 3, stride=1, padding=1)[:, 0]
            smaller = torch.where(work_masks, torch.minimum(work, spread), big).view(m, hw)
            # hook: the pixel a label points at takes the smaller label too, so a whole region that
            # points at it follows on the next jump (union-find style), not one pixel per round
            flat = work.reshape(m, hw).clone()
            flat.scatter_reduce_(1, flat.clamp(max=hw - 1).long(), smaller, reduce="amin")
            flat = torch.minimum(flat, smaller)
            for _ in range(2):
                flat = flat.gather(1, flat.clamp(max=hw - 1).long())
            work = torch.where(work_masks, flat.view(m, h, w), big)
        moving = (work != before).flatten(1).any(1)
        labels[active] = work
        still = moving.nonzero().squeeze(1)  # one sync per check, as torch.equal was
        if still.numel() == 0:
            break
        if still.numel() < moving.numel():
            active, work, work_masks = active[still], work[still], work_masks[still]
    flat = labels.view(n, hw).long()
    kept = masks.view(n, hw)
    sizes = torch.zeros(n, hw + 1, dtype=torch.int64, device=masks.device)
    sizes.scatter_add_(1, flat, kept.long())
    sizes = sizes[:, :hw]
    # the largest component; among equal sizes the smallest label (= first pixel in raster order)
    score = sizes * (hw + 1) + (hw - torch.arange(hw, device=masks.device))
    score = torch.where(sizes > 0, score, -1)
    best = score.argmax(1)
    member = (flat == best[:, None]) & kept
    member = member.view(n, h, w)
    rows, cols = member.any(2), member.any(1)
    has = rows.any(1)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    y0 = torch.where(rows, ar_h, h).amin(1)
    y1 = torch.where(rows, ar_h, -1).amax(1)
    x0 = torch.where(cols, ar_w, w).amin(1)
    x1 = torch.where(cols, ar_w, -1).amax(1)
    boxes = torch.stack([x0, y0, x1, y1], 1)
    return torch.where(has[:, None], boxes, out)


def gradcam_rule_masks(maps: Tensor, size: tuple[int, int], ratio: float = 0.15, normalized: bool = False) -> Tensor:
    """The pixels the Grad-CAM rule keeps, bool [N, H, W], from maps [N, h, w].

    Raw maps are first scaled as grad-cam does (:func:`tdviz.cam.normalize_maps`, to ``size``);
    ``normalized=True`` takes maps already at ``size`` in [0, 1]. A pixel is kept when
    ``value >= ratio * max`` (compared in float64, as :func:`~tdviz.wsol.boxes.cam_boxes`); a map
    whose max is ``<= 0`` keeps nothing.
    """
    m = maps.float() if normalized else normalize_maps(maps, size)
    peak = m.amax((-2, -1), keepdim=True).double()
    return (m.double() >= ratio * peak) & (peak > 0)


def gradcam_rule_boxes(maps: Tensor, size: tuple[int, int], ratio: float = 0.15, normalized: bool = False,
                       chunk: int = 1024) -> Tensor:
    """Grad-CAM-rule boxes of maps [..., h, w] (see :func:`gradcam_rule_masks`): the inclusive box
    of the largest kept component, int64 [..., 4] in input pixels, ``-1`` where there is no box.
    ``chunk`` maps are processed at a time to bound memory (about 50 bytes per pixel)."""
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, *maps.shape[-2:])
    boxes = [largest_component_boxes(gradcam_rule_masks(flat[i:i + chunk], size, ratio, normalized))
             for i in range(0, flat.shape[0], chunk)]
    if not boxes:
        return torch.full((*lead, 4), -1, dtype=torch.int64, device=maps.device)
    return torch.cat(boxes).reshape(*lead, 4)
