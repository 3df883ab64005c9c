"""Weakly-supervised localization: annotations, map -> box rules, and streaming metrics.

* :mod:`.annotations`: ILSVRC XML, Kaggle ``LOC_val_solution.csv``, clovaai/wsolevaluation
  metadata, COCO json, ImageFolder and flat label lists -> :class:`WsolSample` records;
  :func:`load_wsol_dataset` detects the format.
* :mod:`.boxes`: the Grad-CAM rule (:func:`cam_boxes`) and wsolevaluation's
  (:func:`wsol_scoremap`, :func:`wsol_boxes`, :func:`wsol_best_ious`), and :func:`box_iou`.
* :mod:`.metrics`: :class:`CamProtocolMeter` (top-1/top-5/GT-known loc), :class:`MaxBoxAccMeter`
  (MaxBoxAcc, MaxBoxAccV2) and :class:`PxAPMeter`, resumable through ``to_state``/``from_state``.
"""
from .annotations import (
    WsolDataset,
    WsolSample,
    count_problems,
    demo_class_index,
    detect_annotation_kind,
    imagefolder_class_index,
    imagenet_class_index,
    load_wsol_dataset,
    read_coco,
    read_flat_labels,
    read_ilsvrc_xml,
    read_imagefolder_labels,
    read_loc_csv,
    read_synset_mapping,
    read_wsolevaluation,
)
from .boxes import (
    WSOL_SIZE,
    box_iou,
    cam_boxes,
    cam_threshold_grid,
    resize_boxes_wsol,
    wsol_best_ious,
    wsol_boxes,
    wsol_quantize,
    wsol_scoremap,
)
from .metrics import (
    CamProtocolMeter,
    CamProtocolResult,
    MaxBoxAccMeter,
    MaxBoxAccResult,
    PxAPMeter,
    PxAPResult,
    load_gt_mask,
    meter_from_state,
)

__all__ = [
    "WSOL_SIZE",
    "CamProtocolMeter",
    "CamProtocolResult",
    "MaxBoxAccMeter",
    "MaxBoxAccResult",
    "PxAPMeter",
    "PxAPResult",
    "WsolDataset",
    "WsolSample",
    "box_iou",
    "cam_boxes",
    "cam_threshold_grid",
    "count_problems",
    "demo_class_index",
    "detect_annotation_kind",
    "imagefolder_class_index",
    "imagenet_class_index",
    "load_gt_mask",
    "load_wsol_dataset",
    "meter_from_state",
    "read_coco",
    "read_flat_labels",
    "read_ilsvrc_xml",
    "read_imagefolder_labels",
    "read_loc_csv",
    "read_synset_mapping",
    "read_wsolevaluation",
    "resize_boxes_wsol",
    "wsol_best_ious",
    "wsol_boxes",
    "wsol_quantize",
    "wsol_scoremap",
]
