"""The meters of a `tdviz wsol` run and what it reports from them: ``results.json`` and ``results.csv``.

A run keeps, per model and per step (and ``"mc"``, the most confident step), one meter per metric
(:mod:`tdviz.wsol.metrics`). A metric that no image could give (no GT box, no mask) is left out of
a row, never written as 0; every row carries the image counts behind its numbers (``n`` for
classification, ``n_boxes`` for the localization metrics, ``n_masks`` for PxAP).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from .metrics import METRICS, meter_from_state
from .runstate import write_text_atomic

__all__ = ["add_rows", "csv_columns", "meters_from_state", "meters_to_state", "results_of", "write_results"]


def csv_columns(results: dict | None = None) -> list[str]:
    """The metric columns of results.csv: every default metric's, and those of other metrics a
    run measured, in registration order."""
    present = set()
    for steps in (results or {}).get("models", {}).values():
        for row in steps.values():
            present |= set(row)
    cols = []
    for spec in METRICS.values():
        keys = [key for key, _ in spec.columns]
        if spec.default or present & set(keys):
            cols += keys
    return cols


def meters_to_state(meters: dict[str, dict[str, dict]]) -> dict:
    """model -> step -> metric -> the meter's JSON state."""
    return {m: {s: {k: v.to_state() for k, v in ms.items()} for s, ms in steps.items()} for m, steps in meters.items()}


def meters_from_state(state_meters: dict) -> dict[str, dict[str, dict]]:
    """The meters saved by :func:`meters_to_state` (model -> step -> metric -> meter)."""
    out = {}
    for model, steps in state_meters.items():
        out[model] = {}
        for step, ms in steps.items():
            out[model][step] = {}
            for key, state in ms.items():
                meter = meter_from_state(state)
                meter.name = key
                out[model][step][key] = meter
    return out


def add_rows(model_meters: dict[str, dict], rows: dict[str, np.ndarray], mc) -> None:
    """Add one chunk's rows (metric -> [N, T, ...], from :func:`tdviz.wsol.extract.extract_chunk`)
    to a model's meters: every step's, and "mc" with each image's most confident step (index
    ``mc`` [N])."""
    mc = np.asarray(mc, np.int64)
    picked = np.arange(len(mc))
    steps = next(iter(rows.values())).shape[1] if rows else 0
    for key in [str(t + 1) for t in range(steps)] + ["mc"]:
        for name, r in rows.items():
            meter = model_meters[key].get(name)
            if meter is not None:
                meter.add_rows(r[picked, mc] if key == "mc" else r[:, int(key) - 1])


def _row(ms: dict) -> dict:
    row = {}
    for meter in ms.values():
        for key, value in meter.report().items():
            row.setdefault(key, value)
    return row


def results_of(meters: dict[str, dict[str, dict]], images: int, skipped: list, config: dict) -> dict:
    """results.json's content: every measured metric per model and step (and "mc")."""
    out = {"images": images, "skipped": [str(p) for p in skipped], "config": config,
           "models": {name: {step: _row(ms) for step, ms in steps.items()} for name, steps in meters.items()}}
    return json.loads(json.dumps(out, default=float))


def write_results(out: Path, results: dict) -> None:
    """results.json and results.csv (two decimals; an unmeasured metric is an empty cell) in
    ``out``, each replaced atomically."""
    cols = csv_columns(results)
    rows = io.StringIO()
    w = csv.writer(rows)
    w.writerow(["model", "step"] + cols)
    for name, steps in results["models"].items():
        for step, row in steps.items():
            w.writerow([name, step] + [("" if row.get(c) is None else f"{row[c]:.2f}") for c in cols])
    write_text_atomic(out / "results.json", json.dumps(results, indent=1))
    write_text_atomic(out / "results.csv", rows.getvalue())
