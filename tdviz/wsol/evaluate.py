"""`tdviz wsol`: localization metrics for several models at every computation step, resumable.

Per image and model: one ``step_cams`` call gives the maps of the top-k classes of every step plus
the ground-truth class's map. Two protocols:

* ``cam`` (the paper's Table 3, Grad-CAM's rule): boxes from each top-k class's map at
  ``ratio``·max (largest component), mapped from the model input (the model's own preprocessing,
  e.g. Resize 256 + CenterCrop 224) back to original pixels; top-1 / top-5 / GT-known loc at
  IoU >= 0.5 against any GT box, in original pixels.
* ``wsol`` (clovaai/wsolevaluation): the image is resized to 224² (their preprocessing), the GT
  class's raw map goes through their score-map rules; MaxBoxAccV2 (δ 30/50/70, all contours),
  MaxBoxAcc (δ 50, largest contour) and, where masks exist, PxAP.

Every metric is reported per step and for the paper's most-confident-step rule ("mc"). Images are
read as stored (no EXIF rotation: annotations are in the stored frame, as wsolevaluation reads
them). Records are appended per batch to ``records.jsonl`` and the meters, with the byte length
of the records they count, saved atomically to ``state.json`` together with the run's identity
(:mod:`tdviz.wsol.runstate`), so ``resume=True`` continues an interrupted run of the same models,
data and options and ends with the same ``results.json``. Where the work runs: see
:class:`WsolRun`; several GPUs or machines: :mod:`tdviz.wsol.shards`; the files ``save_maps``
writes: :mod:`tdviz.wsol.saved_maps`.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..cam import check_method, step_cams
from ..errors import TdvizError
from ..geometry import InputFrame
from ..images import Preprocess
from ..models.base import model_num_classes
from ..processes import follow_parent
from ..progress import image_progress
from ..steps import most_confident_step
from .annotations import WsolDataset, WsolSample
from .components import gradcam_rule_boxes, gradcam_rule_masks
from .extract import extract_chunk, image_entry, init_worker
from .loader import _collate, _Images, _ramp_batches
from .metrics import MaxBoxAccMeter
from .results import add_rows, make_meters, meters_from_state, meters_to_state, results_of, write_results
from .runstate import OutputLock, RunIdentity, append_text, read_state, run_identity, write_json_atomic

PROTOCOLS = ("cam", "wsol")

#: entries of a model's part that hold one row per image (sliced per chunk)
_PER_IMAGE = {"class_ids", "scores", "cam_boxes", "cam_masks", "wsol_raw", "mc", "save"}


def _slice(value, sl: slice):
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: v[sl] for k, v in value.items()}
    return value[sl]


@dataclass
class WsolConfig:
    """Settings of a run. All but ``batch_size`` and ``limit`` are part of its identity: a resumed
    run must use the same (``limit`` may grow)."""

    protocols: tuple[str, ...] = PROTOCOLS
    topk: int = 5
    cam_ratio: float = 0.15
    iou_threshold: float = 0.5
    method: str = "gradcam"
    layer: str | None = None
    batch_size: int = 16
    limit: int | None = None

    def identity_options(self) -> dict:
        """The options that change a number (everything but batch size and limit)."""
        d = asdict(self)
        d.pop("batch_size")
        d.pop("limit")
        d["protocols"] = list(d["protocols"])
        return d


def box_pool(workers: int):
    """The box-extraction pool: ``workers`` spawned processes, all started now (their start then
    overlaps the decoding of the first batches), each running OpenCV on one thread and exiting
    when this process dies (also by SIGKILL).

    Spawn, not fork: a forked child inherits the parent's OpenCV/OpenMP thread pools in whatever
    state they are, and can deadlock in them. The workers import only :mod:`tdviz.wsol.extract`
    (no torch), so they start in a fraction of a second.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker,
                               initargs=(os.getpid(),))
    for _ in range(workers):
        pool.submit(os.getpid)
    return pool


def _components_on_device(device: torch.device) -> bool:
    """Label the Grad-CAM rule's components with torch on the maps' device (a GPU), or with
    OpenCV in the box workers (faster than torch on a CPU). Both give the same boxes (tested)."""
    return device.type == "cuda"


STATE_VERSION = 3
_IN_FLIGHT = 6  # batches whose boxes may still be in the pool while the models run the next one


class WsolRun:
    """One evaluation: models x steps x meters, with its files under ``out_dir``.

    The main process decodes nothing and extracts no box: loader workers decode and resize, the
    models run on their device (where the Grad-CAM-rule boxes are found too, on a GPU), and the
    pool's workers (:func:`tdviz.wsol.extract.extract_chunk`) do the rest per image. Batches are
    committed in order: their meter rows are added, their record lines appended, and the state
    saved, so an interrupted run resumes exactly after the last committed batch.

    A folder that already holds a run is continued with ``resume=True`` (same identity) or
    replaced with ``overwrite=True``; otherwise it is refused, so finished work is never lost.
    ``identity`` defaults to :func:`run_identity` of ``models`` on ``dataset``.
    """

    def __init__(self, models: dict[str, torch.nn.Module], dataset: WsolDataset, out_dir: str | Path,
                 config: WsolConfig, resume: bool = False, save_maps: str | Path | None = None,
                 overwrite: bool = False, identity: RunIdentity | None = None):
        if not models:
            raise TdvizError("No model to evaluate: pass at least one --model.")
        self.models, self.dataset, self.cfg = models, dataset, config
        self.cfg.method = check_method(config.method)
        self.out = Path(out_dir)
        if self.out.exists() and not self.out.is_dir():
            raise TdvizError(f"--out {str(self.out)!r} is an existing file: pass a folder for the run's results.")
        self.save_maps = Path(save_maps) if save_maps else None
        self.identity = identity or run_identity(models, dataset, config)
        self.state_file = self.out / "state.json"
        self.records_file = self.out / "records.jsonl"
        self.meters: dict[str, dict[str, dict]] = {}
        self.skipped: list[str] = []
        self.skipped_ids: list[str] = []
        self.done: set[str] = set()
        self.images = 0  # images counted
        self.records_bytes = 0
        self.pool = None
        self.timeline: list[tuple[float, int]] = []  # (time, images) per committed batch, for benchmarks
        self.samples, unfit = self._fitting(dataset.samples[: config.limit] if config.limit else dataset.samples)
        self.has_masks = any(s.mask_paths for s in self.samples)
        self._resume, self._overwrite = resume, overwrite
        self._unfit = unfit

    def _fitting(self, samples: list[WsolSample]) -> tuple[list[WsolSample], list[tuple[str, str]]]:
        """The samples whose label every model can score, and a problem for each other one."""
        sizes = {label: model_num_classes(m) for label, m in self.models.items()}
        known = {k: v for k, v in sizes.items() if v is not None}
        if not known:
            return list(samples), []
        label, classes = min(known.items(), key=lambda kv: kv[1])
        if self.cfg.topk > classes:
            raise TdvizError(f"--topk {self.cfg.topk} is more than the {classes} classes of model {label!r}: use "
                             f"--topk {min(5, classes)} or less.")
        keep, bad = [], []
        for s in samples:
            if 0 <= s.label < classes:
                keep.append(s)
            else:
                why = f"{s.image_id}: label {s.label} is outside the {classes} classes of model {label!r}; image skipped"
                bad.append((s.image_id, why))
        if samples and not keep:
            top = max(s.label for s in samples)
            raise TdvizError(f"No image's label fits model {label!r} ({classes} classes; the labels go up to {top}): "
                             "evaluate it on data of its own classes, or pass --num-classes / a class mapping.")
        return keep, bad

    # ------------------------------------------------------------------ state
    def _start(self) -> None:
        """Continue the run in ``out`` (resume), or start one where none is."""
        has_records = self.records_file.exists() and self.records_file.stat().st_size > 0
        if self._resume and self.state_file.exists():
            self._load_state()
            for f in (self.out / "results.json", self.out / "results.csv"):  # present only once finished
                f.unlink(missing_ok=True)
            return
        if self._resume and has_records:
            raise TdvizError(f"--resume: {self.state_file} is missing, so the {self.records_file.name} beside it "
                             "cannot be counted; keep that file and start a fresh --out (or pass --overwrite to "
                             "replace it).")
        if (has_records or self.state_file.exists()) and not self._overwrite:
            raise TdvizError(f"{str(self.out)!r} already holds a tdviz wsol run: pass --resume to continue it, "
                             "--overwrite to replace it, or a fresh --out.")
        for f in (self.records_file, self.state_file, self.out / "results.json", self.out / "results.csv"):
            f.unlink(missing_ok=True)
        masks = self.has_masks
        for name, model in self.models.items():
            steps = getattr(model, "num_steps", 1)
            self.meters[name] = {str(t): make_meters(self.cfg.protocols, self.cfg.topk, self.cfg.iou_threshold, masks)
                                 for t in range(1, steps + 1)}
            self.meters[name]["mc"] = make_meters(self.cfg.protocols, self.cfg.topk, self.cfg.iou_threshold, masks)
        self.skipped = list(self.dataset.problems)
        self._skip(self._unfit)

    def _skip(self, problems: list[tuple[str, str]]) -> None:
        for image_id, problem in problems:
            if image_id not in self.done:
                self.skipped.append(problem)
                self.skipped_ids.append(image_id)
                self.done.add(image_id)

    def _load_state(self) -> None:
        state = read_state(self.state_file)
        if state.get("version") != STATE_VERSION:
            raise TdvizError(f"--resume: {self.state_file} was written by another tdviz version; start a fresh --out.")
        try:
            saved = RunIdentity.from_dict(state["identity"])
            self.meters = meters_from_state(state["meters"])
            self.skipped, self.skipped_ids = list(state["skipped"]), list(state["skipped_ids"])
            self.records_bytes, self.images = int(state["records_bytes"]), int(state["images"])
        except (KeyError, TypeError, ValueError, TdvizError) as exc:
            raise TdvizError(f"--resume: {self.state_file} is damaged ({type(exc).__name__}: {exc}); start a fresh "
                             "--out.") from None
        diff = self.identity.differences(saved)
        if diff:
            raise TdvizError(f"--resume: the run in {str(self.out)!r} was made with other settings: "
                             f"{'; '.join(diff)}. Resume with the same ones, or start a fresh --out.")
        # records appended after the last saved state belong to a batch that was not counted: cut them
        size = self.records_file.stat().st_size if self.records_file.exists() else 0
        if size < self.records_bytes:
            raise TdvizError(f"--resume: {self.records_file} is shorter than {self.state_file} records; "
                             "the output folder was changed by hand: start a fresh --out.")
        if size:
            os.truncate(self.records_file, self.records_bytes)
        import json

        kept = self.records_file.read_text().splitlines() if size else []
        self.done = {json.loads(line)["image_id"] for line in kept} | set(self.skipped_ids)
        if self.cfg.limit is not None and len(self.done - {s.image_id for s in self.samples} - set(self.skipped_ids)):
            raise TdvizError(f"--resume: the run in {str(self.out)!r} counted more images than --limit "
                             f"{self.cfg.limit} keeps; resume with the same or a larger --limit.")
        self._skip(self._unfit)

    def _save_state(self) -> None:
        write_json_atomic(self.state_file, {
            "version": STATE_VERSION, "identity": self.identity.to_dict(), "config": asdict(self.cfg),
            "images": self.images, "skipped": self.skipped, "skipped_ids": self.skipped_ids,
            "records_bytes": self.records_bytes, "meters": meters_to_state(self.meters)})

    # ------------------------------------------------------------------ run
    def run(self, workers: int = 2, progress: bool = True, stop_after: int | None = None,
            box_workers: int = 0) -> dict:
        """Evaluate the images not done yet (``stop_after`` batches, for tests of resuming).

        ``workers`` processes decode images; ``box_workers`` processes extract boxes (0: inline).
        The output folder is locked for the whole run.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        with OutputLock(self.out):
            self._start()
            self.pool = box_pool(box_workers) if box_workers > 0 else None
            self.box_workers = box_workers
            try:
                return self._run(workers, progress, stop_after)
            finally:
                if self.pool is not None:
                    self.pool.shutdown(cancel_futures=True)

    def _run(self, workers: int, progress: bool, stop_after: int | None) -> dict:
        preprocs = {}
        for name, model in self.models.items():
            if "cam" in self.cfg.protocols:
                preprocs[f"cam:{name}"] = Preprocess(mode=getattr(model, "tdviz_preprocess", "resize_crop"))
            if "wsol" in self.cfg.protocols:
                preprocs[f"wsol:{name}"] = Preprocess(mode="resize")
        todo = [s for s in self.samples if s.image_id not in self.done]
        loader = DataLoader(_Images(todo, preprocs), batch_sampler=_ramp_batches(len(todo), self.cfg.batch_size),
                            num_workers=workers, collate_fn=_collate, pin_memory=torch.cuda.is_available(),
                            prefetch_factor=4 if workers else None, worker_init_fn=follow_parent if workers else None)
        batches = 0
        pending: deque = deque()
        with image_progress("localizing", len(todo), progress) as advance:
            for batch in loader:
                pending.append(self._launch(todo, batch, preprocs))
                while len(pending) >= _IN_FLIGHT or (len(pending) > 1 and pending[0]["ready"]()):
                    self._commit(pending.popleft(), advance)
                    batches += 1
                    if stop_after is not None and batches >= stop_after:
                        return {}
            while pending:
                self._commit(pending.popleft(), advance)
        if not todo:
            self._save_state()
        results = self.results()
        write_results(self.out, results)
        return results

    def _launch(self, todo, batch, preprocs) -> dict:
        """Run the models on a batch and hand its per-image work to the pool (or do it inline)."""
        good_idx, bad_idx, stacked = batch
        good = [todo[i] for i, _ in good_idx]
        launched = {"good": good, "bad": [(todo[i].image_id, info) for i, info in bad_idx],
                    "notes": [info[2] for _, info in good_idx if info[2]],
                    "size": len(good_idx) + len(bad_idx), "mc": {}, "parts": [], "ready": lambda: True}
        if not good:
            return launched
        sizes = [info[:2] for _, info in good_idx]
        labels = torch.tensor([s.label for s in good])
        parts = {name: self._model_part(name, model, stacked, labels, preprocs) for name, model in self.models.items()}
        launched["mc"] = {name: part["mc"] for name, part in parts.items()}
        images = [image_entry(s, w, h) for s, (w, h) in zip(good, sizes)]
        cfg = {"topk": self.cfg.topk, "iou_threshold": self.cfg.iou_threshold, "pxap": self.has_masks,
               "thresholds": MaxBoxAccMeter().thresholds if "wsol" in self.cfg.protocols else None,
               "save_maps": str(self.save_maps) if self.save_maps else None}
        per_chunk = max(4, -(-len(good) // max(1, 2 * self.box_workers)))
        for start in range(0, len(good), per_chunk):
            sl = slice(start, start + per_chunk)
            chunk = {"cfg": cfg, "images": images[sl],
                     "models": {name: {k: (_slice(v, sl) if k in _PER_IMAGE else v) for k, v in part.items()}
                                for name, part in parts.items()}}
            work = self.pool.submit(extract_chunk, chunk) if self.pool else extract_chunk(chunk)
            launched["parts"].append((start, len(chunk["images"]), work))
        if self.pool:
            launched["ready"] = lambda: all(f.done() for _, _, f in launched["parts"])
        return launched

    def _model_part(self, name, model, stacked, labels, preprocs) -> dict:
        """One model on one batch: classes, scores and boxes (or masks) of the cam protocol, the GT
        class's raw map of the wsol protocol, the most confident step; all on the host."""
        device = next(model.parameters()).device
        cams_of: dict[str, object] = {}
        for proto in self.cfg.protocols:
            key = f"{proto}:{name}"
            same = next((p for p in cams_of if preprocs[f"{p}:{name}"] == preprocs[key]), None)
            if same is not None:
                cams_of[proto] = cams_of[same]
                continue
            x = preprocs[key].normalize(stacked[key].to(device, non_blocking=True))
            cams_of[proto] = step_cams(model, x, layer=self.cfg.layer, method=self.cfg.method, classes="topk",
                                       k=self.cfg.topk, append_labels=labels.to(device), normalize=False)
        first = next(iter(cams_of.values()))
        pre = preprocs.get(f"cam:{name}", Preprocess())
        frame = InputFrame(pre.mode, pre.size, pre.resize)  # what workers need of it, without torch
        part = {"steps": first.logits.shape[1], "has_cam": "cam" in cams_of, "pre": frame, "size": (pre.size, pre.size),
                "mc": most_confident_step(first.logits)[0].cpu().numpy() - 1,  # index
                "class_ids": None, "scores": None, "cam_boxes": None, "cam_masks": None, "wsol_raw": None,
                "save": None}
        cam = cams_of.get("cam")
        if cam is not None:
            maps, normalized = (cam.raw, False) if cam.raw is not None else (cam.maps, True)
            part["class_ids"] = cam.class_ids.cpu().numpy()
            part["scores"] = cam.scores.float().cpu().numpy()
            if _components_on_device(maps.device):
                part["cam_boxes"] = gradcam_rule_boxes(maps, part["size"], self.cfg.cam_ratio, normalized).cpu().numpy()
            else:  # the CPU labels components faster with OpenCV, in the pool
                masks = gradcam_rule_masks(maps.flatten(0, 2), part["size"], self.cfg.cam_ratio, normalized)
                bits = np.packbits(masks.flatten(1).numpy(), axis=1)
                part["cam_masks"] = bits.reshape(*maps.shape[:3], -1)
        wsol = cams_of.get("wsol")
        if wsol is not None:
            if wsol.raw is None:
                raise TdvizError(f"The wsol protocol needs raw maps; method {self.cfg.method!r} gives only normalized "
                                 "ones: use a gradient method such as gradcam.")
            part["wsol_raw"] = wsol.raw[:, :, -1].float().cpu().numpy()
        if self.save_maps is not None:
            part["save"] = {"logits": first.logits.float().cpu().numpy()}
            if cam is not None:
                key = "cam_raw" if cam.raw is not None else "cam_maps"
                part["save"][key] = (cam.raw if cam.raw is not None else cam.maps).float().cpu().numpy()
            part["meta"] = {"model": name, "name": getattr(model, "tdviz_name", None), "method": self.cfg.method,
                            "layer": first.layer, "cam_preprocess": asdict(frame), "cam_ratio": self.cfg.cam_ratio}
        return part

    def _commit(self, launched: dict, advance) -> None:
        """Count a launched batch, append its records, save the state: the batch is then done."""
        self._skip(launched["bad"])
        self.skipped += launched["notes"]
        lines = []
        for start, n, res in launched["parts"]:
            res = res.result() if self.pool else res
            chunk = launched["good"][start:start + n]
            self._skip([(chunk[b].image_id, problem) for b, problem in res["problems"]])
            self.done.update(s.image_id for s in chunk)
            lines += res["lines"]
            ok = np.asarray(res["ok"], np.int64)
            self.images += len(ok)
            if len(ok):
                for name, arrays in res["models"].items():
                    add_rows(self.meters[name], arrays, launched["mc"][name][start + ok])
        self.records_bytes = append_text(self.records_file, "".join(lines))
        self._save_state()
        advance(launched["size"])
        self.timeline.append((time.perf_counter(), launched["size"]))

    # ------------------------------------------------------------------ results
    def results(self) -> dict:
        """Every measured metric per model and step (and "mc"), as plain numbers."""
        return results_of(self.meters, self.images, self.skipped, asdict(self.cfg))


def demo_wsol_dataset(images: int = 1000, workers: int = 2) -> WsolDataset:
    """The demo validation split as a WSOL dataset: boxes from its ILSVRC XML, masks from its
    wsolevaluation mask metadata (so PxAP is measured too)."""
    from ..demo import make_demo_split
    from .annotations import demo_class_index, load_wsol_dataset, read_wsolevaluation

    split = make_demo_split(n=images, workers=workers)
    data = load_wsol_dataset(split / "boxes_xml", images_root=split / "images", class_index=demo_class_index())
    masked, problems = read_wsolevaluation(split / "wsol" / "mask", data_root=split)
    by_id = {s.image_id: s for s in masked}
    for s in data.samples:
        m = by_id.get(s.image_id)
        if m is not None:
            s.mask_paths, s.ignore_path = m.mask_paths, m.ignore_path
    data.problems += problems
    return data


def run_wsol(models: dict[str, torch.nn.Module], dataset: WsolDataset, out_dir: str | Path,
             config: WsolConfig | None = None, resume: bool = False, save_maps: str | Path | None = None,
             workers: int = 2, progress: bool = True, box_workers: int = 0,
             shard: tuple[int, int] | None = None, overwrite: bool = False) -> dict:
    """Evaluate ``models`` on ``dataset`` and write results.json, results.csv and records.jsonl.

    ``resume=True`` continues the run in ``out_dir`` (refused when its models, weights, data or
    options differ; ``config.limit`` may grow); ``overwrite=True`` replaces a run there; neither:
    a folder holding a run is refused. ``shard=(i, n)`` (or torchrun's RANK / WORLD_SIZE when not
    given) evaluates every n-th image from the i-th into ``out_dir/shard-i-of-n`` (each shard
    resumable on its own); the shard that finishes last merges all of them into ``out_dir`` (see
    :mod:`tdviz.wsol.shards`).
    """
    from .shards import merge_shards, shard_dataset, shard_dir, shard_from_env

    if not dataset.samples:
        first = dataset.problems[0] if dataset.problems else "no record"
        raise TdvizError(f"No usable image in {dataset.source} ({first}).")
    config = config or WsolConfig()
    identity = run_identity(models, dataset, config)
    shard = shard or shard_from_env()
    if shard is None or shard[1] == 1:
        run = WsolRun(models, dataset, out_dir, config, resume, save_maps, overwrite, identity)
        return run.run(workers, progress, box_workers=box_workers)
    index, count = shard
    part = shard_dataset(dataset, index, count, config.limit)
    run = WsolRun(models, part, shard_dir(out_dir, index, count), config, resume, save_maps, overwrite, identity)
    own = run.run(workers, progress, box_workers=box_workers)
    merged = merge_shards(out_dir, count)
    return merged if merged is not None else dict(own, shard=[index, count], merged=False)
