"""Localization metrics: one protocol (:class:`Meter`), one file per metric, one registry.

* :mod:`.cam_protocol`: top-1 / top-5 classification, top-1 / top-5 / GT-known localization (the
  TDAM paper's Table 3, Grad-CAM's rule);
* :mod:`.maxboxacc`: MaxBoxAcc and MaxBoxAccV2 exactly as clovaai/wsolevaluation's BoxEvaluator;
* :mod:`.pxap`: PxAP exactly as its MaskEvaluator;
* :mod:`.gt_known_iou`: GT-known loc at IoU 30/50/70 % (asked for by name).

All accuracies are reported in percent, as wsolevaluation does. An image whose ground truth
cannot give a metric (no GT box for the localization metrics, no mask for PxAP) is not counted by
that metric: each result carries its own image count, and a metric no image could give is
absent from a results row (never 0).
"""

# isort: skip_file
# the import order is the registration order, which orders results' and the table's columns
from . import cam_protocol, maxboxacc, pxap, gt_known_iou  # noqa: F401
from .base import METRICS, Meter, MetricOptions, MetricSpec, make_metrics, meter_from_state, register
from .cam_protocol import CamProtocolMeter, CamProtocolResult
from .gt_known_iou import GTKnownIoUMeter
from .maxboxacc import MaxBoxAccMeter, MaxBoxAccResult
from .pxap import PxAPMeter, PxAPResult, load_gt_mask

__all__ = [
    "METRICS",
    "CamProtocolMeter",
    "CamProtocolResult",
    "GTKnownIoUMeter",
    "MaxBoxAccMeter",
    "MaxBoxAccResult",
    "Meter",
    "MetricOptions",
    "MetricSpec",
    "PxAPMeter",
    "PxAPResult",
    "load_gt_mask",
    "make_metrics",
    "meter_from_state",
    "register",
]
