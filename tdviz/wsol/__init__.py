"""Weakly-supervised localization: map -> box rules, metrics, and the `tdviz wsol` run.

* :mod:`tdviz.datasets` (re-exported here under the old names): ILSVRC XML, Kaggle
  ``LOC_val_solution.csv``, clovaai/wsolevaluation metadata, COCO json, ImageFolder and flat label
  lists -> :class:`~tdviz.datasets.Sample` records; :func:`load_wsol_dataset` detects the format.
* :mod:`.boxes`: the Grad-CAM rule (:func:`cam_boxes`) and wsolevaluation's
  (:func:`wsol_scoremap`, :func:`wsol_boxes`, :func:`wsol_best_ious`), and :func:`box_iou`;
  :mod:`.native`: wsolevaluation's boxes at every threshold from component trees, in C.
* :mod:`.metrics`: one meter protocol and a registry: :class:`CamProtocolMeter`,
  :class:`MaxBoxAccMeter`, :class:`PxAPMeter`, :class:`GTKnownIoUMeter`.
* :mod:`.streaming`: the same metrics on tensors, for a training loop (:class:`WsolMetrics`).
* :mod:`.evaluate` (:func:`run_wsol`) and :mod:`.pipeline`: the run; :mod:`.shards`,
  :mod:`.results`, :mod:`.runstate`, :mod:`.saved_maps`: its files.
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
from .boxes import box_iou, cam_boxes
from .metrics import (
    METRICS,
    CamProtocolMeter,
    CamProtocolResult,
    GTKnownIoUMeter,
    MaxBoxAccMeter,
    MaxBoxAccResult,
    PxAPMeter,
    PxAPResult,
    load_gt_mask,
    meter_from_state,
)
from .scoremaps import (
    WSOL_SIZE,
    cam_threshold_grid,
    resize_boxes_wsol,
    wsol_best_ious,
    wsol_boxes,
    wsol_quantize,
    wsol_scoremap,
)

__all__ = [
    "METRICS",
    "WSOL_SIZE",
    "CamProtocolMeter",
    "CamProtocolResult",
    "GTKnownIoUMeter",
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
