"""Compatibility names for the annotation readers, which live in :mod:`tdviz.datasets` since tdviz
0.2 (``WsolSample`` is :class:`tdviz.datasets.Sample`, ``load_wsol_dataset`` is
:func:`tdviz.datasets.load_dataset`, ...). New code imports from :mod:`tdviz.datasets`."""

from __future__ import annotations

from ..datasets import (
    Dataset,
    Problem,
    Sample,
    count_problems,
    demo_class_index,
    imagefolder_class_index,
    imagenet_class_index,
    read_coco,
    read_flat_labels,
    read_ilsvrc_xml,
    read_imagefolder_labels,
    read_loc_csv,
    read_synset_mapping,
    read_wsolevaluation,
)
from ..datasets import detect_format as detect_annotation_kind
from ..datasets import load_dataset as load_wsol_dataset
from ..datasets.common import size as _size  # noqa: F401  (kept for scripts that reached in)

WsolSample = Sample
WsolDataset = Dataset

__all__ = [
    "Problem",
    "WsolDataset",
    "WsolSample",
    "count_problems",
    "demo_class_index",
    "detect_annotation_kind",
    "imagefolder_class_index",
    "imagenet_class_index",
    "load_wsol_dataset",
    "read_coco",
    "read_flat_labels",
    "read_ilsvrc_xml",
    "read_imagefolder_labels",
    "read_loc_csv",
    "read_synset_mapping",
    "read_wsolevaluation",
]
