"""The meters of a `tdviz wsol` run and what it reports from them: ``results.json`` and ``results.csv``.

A run keeps, per model and per step (and ``"mc"``, the most confident step), one meter per metric
kind. A metric that no image could give (no GT box, no mask) is left out of a row, never written
as 0; every row carries the image counts behind its numbers (``n`` for classification,
``n_boxes`` for the localization metrics, ``n_masks`` for PxAP).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .metrics import CamProtocolMeter, MaxBoxAccMeter, PxAPMeter
from .runstate import write_text_atomic

__all__ = ["CSV_COLUMNS", "METER_KINDS", "add_rows", "make_meters", "meters_from_state", "meters_to_state", "results_of",
           "write_results"]

METER_KINDS = {"cam": CamProtocolMeter, "maxboxacc_v2": MaxBoxAccMeter, "maxboxacc": MaxBoxAccMeter, "pxap": PxAPMeter}
CSV_COLUMNS = ["top1_cls", "top5_cls", "top1_loc", "top5_loc", "gt_known_loc", "maxboxacc_v2", "maxboxacc", "pxap"]


def make_meters(protocols, topk: int, iou_threshold: float, masks: bool) -> dict:
    """The meters of one model at one step: the cam protocol's, and wsolevaluation's (PxAP only
    when some image has a mask)."""
    m = {}
    if "cam" in protocols:
        m["cam"] = CamProtocolMeter(iou_threshold=iou_threshold, topk=topk)
    if "wsol" in protocols:
        m["maxboxacc_v2"] = MaxBoxAccMeter(deltas=(30, 50, 70), multi_contour=True)
        m["maxboxacc"] = MaxBoxAccMeter(deltas=(50,), multi_contour=False)
        if masks:
            m["pxap"] = PxAPMeter()
    return m


def meters_to_state(meters: dict[str, dict[str, dict]]) -> dict:
    """model -> step -> metric -> the meter's JSON state."""
    return {m: {s: {k: v.to_state() for k, v in ms.items()} for s, ms in steps.items()} for m, steps in meters.items()}


def meters_from_state(state_meters: dict) -> dict[str, dict[str, dict]]:
    """The meters saved by :func:`meters_to_state` (model -> step -> metric -> meter)."""
    return {m: {s: {k: METER_KINDS[k].from_state(v) for k, v in ms.items()} for s, ms in steps.items()}
            for m, steps in state_meters.items()}


def _row(ms: dict) -> dict:
    row = {}
    if "cam" in ms:
        r = ms["cam"].result()
        row.update(top1_cls=r.top1_cls, top5_cls=r.top5_cls, n=r.n)
        if r.n_loc:
            row.update(top1_loc=r.top1_loc, top5_loc=r.top5_loc, gt_known_loc=r.gt_known_loc, n_boxes=r.n_loc)
    if "maxboxacc_v2" in ms and ms["maxboxacc_v2"].n:
        r2, r1 = ms["maxboxacc_v2"].result(), ms["maxboxacc"].result()
        row.update(maxboxacc_v2=r2.value, maxboxacc_v2_per_delta=r2.per_delta, maxboxacc=r1.value)
        row.setdefault("n_boxes", r2.n)
    if "pxap" in ms and ms["pxap"].n:
        row.update(pxap=ms["pxap"].result().pxap, n_masks=ms["pxap"].n)
    return row


def results_of(meters: dict[str, dict[str, dict]], images: int, skipped: list[str], config: dict) -> dict:
    """results.json's content: every measured metric per model and step (and "mc")."""
    out = {"images": images, "skipped": skipped, "config": config,
           "models": {name: {step: _row(ms) for step, ms in steps.items()} for name, steps in meters.items()}}
    return json.loads(json.dumps(out, default=float))


def write_results(out: Path, results: dict) -> None:
    """results.json and results.csv (two decimals; an unmeasured metric is an empty cell) in
    ``out``, each replaced atomically."""
    rows = io.StringIO()
    w = csv.writer(rows)
    w.writerow(["model", "step"] + CSV_COLUMNS)
    for name, steps in results["models"].items():
        for step, row in steps.items():
            w.writerow([name, step] + [("" if row.get(c) is None else f"{row[c]:.2f}") for c in CSV_COLUMNS])
    write_text_atomic(out / "results.json", json.dumps(results, indent=1))
    write_text_atomic(out / "results.csv", rows.getvalue())


def add_rows(model_meters: dict[str, dict], arrays: dict, mc) -> None:
    """Add one chunk's per-image rows ([N, T, ...] per quantity, from
    :func:`tdviz.wsol.extract.extract_chunk`) to a model's meters: every step's, and "mc" with
    each image's most confident step (index ``mc`` [N])."""
    import numpy as np

    mc = np.asarray(mc, np.int64)
    rows = np.arange(len(mc))
    steps = next(a for a in arrays.values() if a is not None).shape[1]
    for key in [str(t + 1) for t in range(steps)] + ["mc"]:
        pick = (lambda a: a[rows, mc]) if key == "mc" else (lambda a, t=int(key) - 1: a[:, t])
        ms = model_meters[key]
        if arrays["hits"] is not None:
            ms["cam"].add_hits(pick(arrays["hits"]))
        if arrays["v2"] is not None:
            ms["maxboxacc_v2"].add_ious(pick(arrays["v2"]))
            ms["maxboxacc"].add_ious(pick(arrays["v1"]))
        if arrays["ht"] is not None and "pxap" in ms:
            ms["pxap"].add_histograms(pick(arrays["ht"]), pick(arrays["hf"]))
