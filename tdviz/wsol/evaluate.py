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

Every metric is reported per step and for the paper's most-confident-step rule ("mc"). Records
are appended per batch to ``records.jsonl`` and the meters, with the byte length of the records
they count, saved atomically to ``state.json``, so ``resume=True`` continues an interrupted run
and ends with the same ``results.json``. Where the work runs: see :class:`WsolRun`; several
GPUs or machines: :mod:`tdviz.wsol.shards`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..cam import step_cams
from ..errors import TdvizError
from ..geometry import InputFrame
from ..images import ImageError, Preprocess, read_image
from ..progress import image_progress
from ..steps import most_confident_step
from .annotations import WsolDataset, WsolSample
from .components import gradcam_rule_boxes, gradcam_rule_masks
from .extract import extract_chunk, init_worker
from .metrics import CamProtocolMeter, MaxBoxAccMeter, PxAPMeter

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
    """Settings of a run (saved with it; a resumed run must use the same)."""

    protocols: tuple[str, ...] = PROTOCOLS
    topk: int = 5
    cam_ratio: float = 0.15
    iou_threshold: float = 0.5
    method: str = "gradcam"
    layer: str | None = None
    batch_size: int = 16
    limit: int | None = None


class _Images(Dataset):
    """Decoded, resized uint8 images (normalized later, on the model's device)."""

    def __init__(self, samples: list[WsolSample], preprocs: dict[str, Preprocess]):
        self.samples, self.preprocs = samples, preprocs

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        s = self.samples[i]
        try:
            img = read_image(s.path)
        except ImageError as exc:
            return i, None, str(exc)
        return i, {k: p.resized(img) for k, p in self.preprocs.items()}, (img.shape[1], img.shape[0])


def _collate(batch):
    """Stack the readable images per preprocessing in the loader worker (shared memory), so the
    main process gets one tensor per protocol instead of copying 100+ images itself."""
    good = [(i, info) for i, tensors, info in batch if tensors is not None]
    bad = [(i, info) for i, tensors, info in batch if tensors is None]
    keys = next((t for _, t, _ in batch if t is not None), {})
    stacked = {k: torch.stack([t[k] for _, t, _ in batch if t is not None]) for k in keys}
    return good, bad, stacked


def _ramp_batches(n: int, batch_size: int) -> list[list[int]]:
    """Indices 0..n-1 in batches of ``batch_size``, the first ones smaller (1/8, 1/4, 1/2): each
    loader worker decodes a whole batch, so small first batches start the models and the box
    workers in a fraction of the time one full batch takes to decode."""
    sizes = [max(1, batch_size // d) for d in (8, 4, 2)]
    batches, start = [], 0
    while start < n:
        size = sizes[len(batches)] if len(batches) < len(sizes) else batch_size
        batches.append(list(range(start, min(start + size, n))))
        start += size
    return batches


def _meters(cfg: WsolConfig, masks: bool) -> dict:
    m = {}
    if "cam" in cfg.protocols:
        m["cam"] = CamProtocolMeter(iou_threshold=cfg.iou_threshold, topk=cfg.topk)
    if "wsol" in cfg.protocols:
        m["maxboxacc_v2"] = MaxBoxAccMeter(deltas=(30, 50, 70), multi_contour=True)
        m["maxboxacc"] = MaxBoxAccMeter(deltas=(50,), multi_contour=False)
        if masks:
            m["pxap"] = PxAPMeter()
    return m


def box_pool(workers: int):
    """The box-extraction pool: ``workers`` spawned processes, all started now (their start then
    overlaps the decoding of the first batches), each running OpenCV on one thread.

    Spawn, not fork: a forked child inherits the parent's OpenCV/OpenMP thread pools in whatever
    state they are, and can deadlock in them. The workers import only :mod:`tdviz.wsol.extract`
    (no torch), so they start in a fraction of a second.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker)
    for _ in range(workers):
        pool.submit(init_worker)
    return pool


def _components_on_device(device: torch.device) -> bool:
    """Label the Grad-CAM rule's components with torch on the maps' device (a GPU), or with
    OpenCV in the box workers (faster than torch on a CPU). Both give the same boxes (tested)."""
    return device.type == "cuda"


_STATE_VERSION = 2


def meters_from_state(state: dict) -> dict[str, dict[str, dict]]:
    """The meters saved in a run's state.json (model -> step -> metric -> meter)."""
    return {m: {s: {k: METER_KINDS[k].from_state(v) for k, v in ms.items()} for s, ms in steps.items()}
            for m, steps in state["meters"].items()}
_IN_FLIGHT = 6  # batches whose boxes may still be in the pool while the models run the next one


class WsolRun:
    """One evaluation: models x steps x meters, with its files under ``out_dir``.

    The main process decodes nothing and extracts no box: loader workers decode and resize, the
    models run on their device (where the Grad-CAM-rule boxes are found too, on a GPU), and the
    pool's workers (:func:`tdviz.wsol.extract.extract_chunk`) do the rest per image. Batches are
    committed in order: their meter rows are added, their record lines appended, and the state
    saved, so an interrupted run resumes exactly after the last committed batch.
    """

    def __init__(self, models: dict[str, torch.nn.Module], dataset: WsolDataset, out_dir: str | Path,
                 config: WsolConfig, resume: bool = False, save_maps: str | Path | None = None):
        self.models, self.dataset, self.cfg = models, dataset, config
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.save_maps = Path(save_maps) if save_maps else None
        self.samples = dataset.samples[: config.limit] if config.limit else list(dataset.samples)
        self.has_masks = bool(self.samples) and all(s.mask_paths for s in self.samples)
        self.state_file = self.out / "state.json"
        self.records_file = self.out / "records.jsonl"
        self.meters: dict[str, dict[str, dict]] = {}
        self.skipped: list[str] = list(dataset.problems)
        self.skipped_ids: list[str] = []
        self.done: set[str] = set()
        self.records_bytes = 0
        self.pool = None
        self.timeline: list[tuple[float, int]] = []  # (time, images) per committed batch, for benchmarks
        if resume and self.state_file.exists():
            self._load_state()
        else:
            if self.records_file.exists():
                self.records_file.unlink()
            for name, model in models.items():
                steps = getattr(model, "num_steps", 1)
                self.meters[name] = {str(t): _meters(config, self.has_masks) for t in range(1, steps + 1)}
                self.meters[name]["mc"] = _meters(config, self.has_masks)

    # ------------------------------------------------------------------ state
    def _load_state(self) -> None:
        state = json.loads(self.state_file.read_text())
        if state.get("version") != _STATE_VERSION:
            raise TdvizError(f"--resume: {self.state_file} was written by another tdviz version; start a fresh --out.")
        if state["config"] != json.loads(json.dumps(asdict(self.cfg))) or sorted(state["models"]) != sorted(self.models):
            raise TdvizError(f"--resume: {self.state_file} was made with other settings or models "
                             f"({state['config']}, {state['models']}); rerun them or start a fresh --out.")
        self.meters = meters_from_state(state)
        self.skipped, self.skipped_ids = state["skipped"], state["skipped_ids"]
        self.records_bytes = state["records_bytes"]
        # records appended after the last saved state belong to a batch that was not counted: cut them
        size = self.records_file.stat().st_size if self.records_file.exists() else 0
        if size < self.records_bytes:
            raise TdvizError(f"--resume: {self.records_file} is shorter than {self.state_file} records; "
                             "the output folder was changed by hand: start a fresh --out.")
        if size:
            os.truncate(self.records_file, self.records_bytes)
        kept = self.records_file.read_text().splitlines() if size else []
        self.done = {json.loads(line)["image_id"] for line in kept} | set(self.skipped_ids)

    def _save_state(self) -> None:
        state = {"version": _STATE_VERSION, "config": asdict(self.cfg), "models": sorted(self.models),
                 "skipped": self.skipped, "skipped_ids": self.skipped_ids, "records_bytes": self.records_bytes,
                 "meters": {m: {s: {k: v.to_state() for k, v in ms.items()} for s, ms in steps.items()}
                            for m, steps in self.meters.items()}}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_file)

    # ------------------------------------------------------------------ run
    def run(self, workers: int = 2, progress: bool = True, stop_after: int | None = None,
            box_workers: int = 0) -> dict:
        """Evaluate the images not done yet (``stop_after`` batches, for tests of resuming).

        ``workers`` processes decode images; ``box_workers`` processes extract boxes (0: inline).
        """
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
                            prefetch_factor=4 if workers else None)
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
        results = self.results()
        write_results(self.out, results)
        return results

    def _launch(self, todo, batch, preprocs) -> dict:
        """Run the models on a batch and hand its per-image work to the pool (or do it inline)."""
        good_idx, bad_idx, stacked = batch
        good = [todo[i] for i, _ in good_idx]
        launched = {"good": good, "bad": [(todo[i].image_id, info) for i, info in bad_idx],
                    "size": len(good_idx) + len(bad_idx), "mc": {}, "parts": [], "ready": lambda: True}
        if not good:
            return launched
        sizes = [info for _, info in good_idx]
        labels = torch.tensor([s.label for s in good])
        parts = {name: self._model_part(name, model, stacked, labels, preprocs) for name, model in self.models.items()}
        launched["mc"] = {name: part["mc"] for name, part in parts.items()}
        images = [{"image_id": s.image_id, "label": int(s.label), "width": w, "height": h,
                   "boxes": np.asarray(s.boxes, np.float64).reshape(-1, 4), "box_labels": s.box_labels,
                   "mask_paths": s.mask_paths if self.has_masks else None, "ignore_path": s.ignore_path}
                  for s, (w, h) in zip(good, sizes)]
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
                "mc": most_confident_step(first.logits)[0].cpu().numpy() - 1,  # index "class_ids": None, "scores": None,
                "cam_boxes": None, "cam_masks": None, "wsol_raw": None, "save": None}
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
            part["save"] = {}
            for proto, c in cams_of.items():
                if c.raw is not None:
                    part["save"][f"{proto}_raw"] = c.raw.float().cpu().numpy().astype(np.float16)
                part["save"][f"{proto}_class_ids"] = c.class_ids.cpu().numpy()
        return part

    def _commit(self, launched: dict, advance) -> None:
        """Count a launched batch, append its records, save the state: the batch is then done."""
        for image_id, problem in launched["bad"]:
            self.skipped.append(problem)
            self.skipped_ids.append(image_id)
            self.done.add(image_id)
        lines = []
        for start, n, res in launched["parts"]:
            res = res.result() if self.pool else res
            chunk = launched["good"][start:start + n]
            for b, problem in res["problems"]:
                self.skipped.append(problem)
                self.skipped_ids.append(chunk[b].image_id)
            self.done.update(s.image_id for s in chunk)
            lines += res["lines"]
            ok = np.asarray(res["ok"], np.int64)
            if len(ok):
                for name, arrays in res["models"].items():
                    self._count(name, arrays, launched["mc"][name][start + ok])
        with self.records_file.open("a") as fh:
            fh.write("".join(lines))
        self.records_bytes = self.records_file.stat().st_size
        self._save_state()
        advance(launched["size"])
        self.timeline.append((time.perf_counter(), launched["size"]))

    def _count(self, name: str, arrays: dict, mc: np.ndarray) -> None:
        """Add one chunk's meter rows ([N, T, ...] per quantity) to every step's meters and to "mc"."""
        rows = np.arange(len(mc))
        steps = next(a for a in arrays.values() if a is not None).shape[1]
        for key in [str(t + 1) for t in range(steps)] + ["mc"]:
            pick = (lambda a: a[rows, mc]) if key == "mc" else (lambda a, t=int(key) - 1: a[:, t])
            ms = self.meters[name][key]
            if arrays["hits"] is not None:
                ms["cam"].add_hits(pick(arrays["hits"]))
            if arrays["v2"] is not None:
                ms["maxboxacc_v2"].add_ious(pick(arrays["v2"]))
                ms["maxboxacc"].add_ious(pick(arrays["v1"]))
            if arrays["ht"] is not None and "pxap" in ms:
                ms["pxap"].add_histograms(pick(arrays["ht"]), pick(arrays["hf"]))

    # ------------------------------------------------------------------ results
    def results(self) -> dict:
        """Every metric per model and step (and "mc"), as plain numbers."""
        return results_of(self.meters, self.skipped, asdict(self.cfg))


METER_KINDS = {"cam": CamProtocolMeter, "maxboxacc_v2": MaxBoxAccMeter, "maxboxacc": MaxBoxAccMeter, "pxap": PxAPMeter}


def results_of(meters: dict[str, dict[str, dict]], skipped: list[str], config: dict) -> dict:
    """results.json's content: every metric per model and step (and "mc") from the meters."""
    first = next(iter(next(iter(meters.values())).values()))
    counted = next(iter(first.values())).n if first else 0
    out = {"images": counted, "skipped": skipped, "config": config, "models": {}}
    for name, steps in meters.items():
        out["models"][name] = {}
        for step, ms in steps.items():
            row = {}
            if "cam" in ms:
                r = ms["cam"].result()
                row.update(top1_cls=r.top1_cls, top5_cls=r.top5_cls, top1_loc=r.top1_loc, top5_loc=r.top5_loc,
                           gt_known_loc=r.gt_known_loc, n=r.n)
            if "maxboxacc_v2" in ms:
                r2, r1 = ms["maxboxacc_v2"].result(), ms["maxboxacc"].result()
                row.update(maxboxacc_v2=r2.value, maxboxacc_v2_per_delta=r2.per_delta, maxboxacc=r1.value)
            if "pxap" in ms:
                row["pxap"] = ms["pxap"].result().pxap
            out["models"][name][step] = row
    return json.loads(json.dumps(out, default=float))


def write_results(out: Path, results: dict) -> None:
    """results.json and results.csv (two decimals) in ``out``, each replaced atomically."""
    cols = ["top1_cls", "top5_cls", "top1_loc", "top5_loc", "gt_known_loc", "maxboxacc_v2", "maxboxacc", "pxap"]
    rows = io.StringIO()
    w = csv.writer(rows)
    w.writerow(["model", "step"] + cols)
    for name, steps in results["models"].items():
        for step, row in steps.items():
            w.writerow([name, step] + [("" if row.get(c) is None else f"{row[c]:.2f}") for c in cols])
    for name, text in (("results.json", json.dumps(results, indent=1)), ("results.csv", rows.getvalue())):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out / name)


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
             shard: tuple[int, int] | None = None) -> dict:
    """Evaluate ``models`` on ``dataset`` and write results.json, results.csv and records.jsonl.

    ``shard=(i, n)`` (or torchrun's RANK / WORLD_SIZE when not given) evaluates every n-th image
    from the i-th into ``out_dir/shard-i-of-n`` (each shard resumable on its own); the shard that
    finishes last merges all of them into ``out_dir`` (see :mod:`tdviz.wsol.shards`).
    """
    from .shards import merge_shards, shard_dataset, shard_dir, shard_from_env

    if not dataset.samples:
        first = dataset.problems[0] if dataset.problems else "no record"
        raise TdvizError(f"No usable image in {dataset.source} ({first}).")
    config = config or WsolConfig()
    shard = shard or shard_from_env()
    if shard is None or shard[1] == 1:
        run = WsolRun(models, dataset, out_dir, config, resume, save_maps)
        return run.run(workers, progress, box_workers=box_workers)
    index, count = shard
    part = shard_dataset(dataset, index, count, config.limit)
    run = WsolRun(models, part, shard_dir(out_dir, index, count), config, resume, save_maps)
    own = run.run(workers, progress, box_workers=box_workers)
    merged = merge_shards(out_dir, count)
    return merged if merged is not None else dict(own, shard=[index, count], merged=False)
