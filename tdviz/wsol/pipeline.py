"""One `tdviz wsol` evaluation, stage by stage: decode -> models and maps -> boxes and metric rows
-> counts, records and state.

* decoding: :func:`tdviz.wsol.loader.cpu_batches` (DataLoader workers) or
  :func:`tdviz.wsol.decode.gpu_batches` (nvJPEG, when the models are on a GPU);
* models: per model and protocol one :func:`tdviz.step_cams` call gives the raw maps of the top-k
  classes and the GT class at every step; the Grad-CAM rule's masks are thresholded where the
  maps are and its boxes found on the GPU, or by OpenCV in the workers on a CPU;
* boxes and rows: :func:`tdviz.wsol.extract.extract_chunk` in a pool of torch-free processes;
* commit: batches are counted in order, their record lines appended and the state saved, so an
  interrupted run resumes exactly after the last committed batch (:class:`RunProgress`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from ..cam import check_method, step_cams
from ..datasets import Dataset, Problem, Sample
from ..errors import TdvizError
from ..geometry import InputFrame
from ..images import Preprocess
from ..models.base import model_num_classes
from ..progress import image_progress
from ..steps import most_confident_step, run_steps
from .components import gradcam_rule_boxes, gradcam_rule_masks
from .config import DECODERS, PRECISIONS, WsolConfig
from .evidence import ImageEntry, ModelPart
from .extract import Chunk, ChunkConfig, ChunkResult, extract_chunk, init_worker
from .loader import Batch, cpu_batches, ramp_batches, resume_plan, shard_plan
from .metrics import make_metrics
from .results import add_rows, results_of, write_results
from .runstate import OutputLock, RunIdentity, RunProgress, append_text, run_identity
from .scoremaps import WSOL_SIZE, cam_threshold_grid

__all__ = ["WsolRun", "box_pool"]

_IN_FLIGHT = 6  # batches whose boxes may still be in the pool while the models run the next one


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


@dataclass
class Launched:
    """A batch whose models have run and whose chunks are in the pool (or done inline)."""

    good: list[Sample]
    bad: list[tuple[str, Problem]]
    notes: list[Problem]
    size: int
    mc: dict[str, np.ndarray] = field(default_factory=dict)
    parts: list[tuple[int, int, object]] = field(default_factory=list)  # (start, n, future or result)

    def ready(self) -> bool:
        return all(getattr(work, "done", lambda: True)() for _, _, work in self.parts)


class WsolRun:
    """One evaluation: models x steps x meters, with its files under ``out_dir``.

    A folder that already holds a run is continued with ``resume=True`` (same identity) or
    replaced with ``overwrite=True``; otherwise it is refused, so finished work is never lost.
    ``identity`` defaults to :func:`~tdviz.wsol.runstate.run_identity` of ``models`` on ``dataset``.
    """

    def __init__(self, models: dict[str, torch.nn.Module], dataset: Dataset, out_dir: str | Path,
                 config: WsolConfig, resume: bool = False, save_maps: str | Path | None = None,
                 overwrite: bool = False, identity: RunIdentity | None = None,
                 shard: tuple[int, int] | None = None):
        if not models:
            raise TdvizError("No model to evaluate: pass at least one --model.")
        if config.decode not in DECODERS or config.precision not in PRECISIONS:
            raise TdvizError(f"--decode {config.decode} / --precision {config.precision} is unknown: use "
                             f"{'/'.join(DECODERS)} and {'/'.join(PRECISIONS)}.")
        self.models, self.dataset, self.cfg = models, dataset, config
        self.cfg.method = check_method(config.method)
        make_metrics(config.protocols, config.metric_options(), False, config.metrics)  # unknown names: one sentence
        self.out = Path(out_dir)
        if self.out.exists() and not self.out.is_dir():
            raise TdvizError(f"--out {str(self.out)!r} is an existing file: pass a folder for the run's results.")
        self.save_maps = Path(save_maps) if save_maps else None
        fit, unfit = self._fitting(dataset.samples[: config.limit] if config.limit else dataset.samples)
        self.has_masks = any(s.mask_paths for s in fit)  # of all images, so that every shard measures alike
        # without a GT box anywhere the cam protocol measures classification only: no maps needed
        self.has_boxes = any(len(s.boxes) for s in fit)
        self.samples, self.plan = fit, ramp_batches(len(fit), config.batch_size)
        self.problems = list(dataset.problems)
        if shard is not None:
            self.samples, self.plan = shard_plan(fit, self.plan, *shard)
            if shard[0]:  # the data's problems and the images no model can score: reported by shard 0
                self.problems, unfit = [], []
        self._unfit = unfit
        self.device = next(next(iter(models.values())).parameters()).device
        self.progress = RunProgress(self.out, identity or run_identity(models, dataset, config),
                                    config.to_dict(self.device.type))
        self._resume, self._overwrite = resume, overwrite
        self.pool = None
        self.box_workers = 0
        self.timeline: list[tuple[float, int]] = []  # (time, images) per committed batch, for benchmarks

    def _fitting(self, samples: list[Sample]) -> tuple[list[Sample], list[tuple[str, Problem]]]:
        """The samples whose label every model can score, and a problem for each other one."""
        sizes = {label: model_num_classes(m) for label, m in self.models.items()}
        known = {k: v for k, v in sizes.items() if v is not None}
        if not known:
            return list(samples), []
        label, classes = min(known.items(), key=lambda kv: kv[1])
        if self.cfg.topk > classes:
            raise TdvizError(f"--topk {self.cfg.topk} is more than the {classes} classes of model {label!r}: use "
                             f"--topk {classes} or less.")
        keep, bad = [], []
        for s in samples:
            if 0 <= s.label < classes:
                keep.append(s)
            else:
                bad.append((s.image_id, Problem(s.image_id, f"label {s.label} is outside the {classes} classes of "
                                                f"model {label!r}", "image skipped")))
        if samples and not keep:
            top = max(s.label for s in samples)
            raise TdvizError(f"No image's label fits model {label!r} ({classes} classes; the labels go up to {top}): "
                             "evaluate it on data of its own classes, or pass --num-classes / a class mapping.")
        return keep, bad

    def _fresh_meters(self) -> dict:
        options, extra = self.cfg.metric_options(), self.cfg.metrics
        meters = {}
        for name, model in self.models.items():
            keys = [str(t) for t in range(1, getattr(model, "num_steps", 1) + 1)] + ["mc"]
            meters[name] = {k: make_metrics(self.cfg.protocols, options, self.has_masks, extra) for k in keys}
        return meters

    # ------------------------------------------------------------------ run
    def run(self, workers: int = 2, progress: bool = True, stop_after: int | None = None,
            box_workers: int = 0) -> dict:
        """Evaluate the images not done yet (``stop_after`` batches, for tests of resuming).

        ``workers`` processes decode images (threads read files for GPU decoding); ``box_workers``
        processes extract boxes (0: inline). The output folder is locked for the whole run.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        with OutputLock(self.out):
            self.progress.start(self._resume, self._overwrite, self._fresh_meters(), self.problems,
                                self._unfit, self.cfg.limit, {s.image_id for s in self.samples})
            self.pool = box_pool(box_workers) if box_workers > 0 else None
            self.box_workers = box_workers
            try:
                return self._run(workers, progress, stop_after)
            finally:
                if self.pool is not None:
                    self.pool.shutdown(cancel_futures=True)

    def _preprocs(self) -> dict[str, Preprocess]:
        """Per protocol and model label, its input: the cam protocol's from the model's record (or
        the run's ``inputs``), the wsol protocol's wsolevaluation's plain resize to 224²."""
        preprocs = {}
        for name, model in self.models.items():
            if "cam" in self.cfg.protocols:
                pre = Preprocess.for_model(model)
                if name in self.cfg.inputs:
                    mode, size, resize = self.cfg.inputs[name]
                    pre = replace(pre, mode=mode, size=int(size), resize=int(resize))
                preprocs[f"cam:{name}"] = pre
            if "wsol" in self.cfg.protocols:
                preprocs[f"wsol:{name}"] = Preprocess.for_model(model, size=WSOL_SIZE, crop="resize")
        return preprocs

    def _batches(self, todo: list[Sample], plan: list[list[int]], preprocs, workers: int):
        if self.cfg.decoder(self.device.type) == "gpu":  # on a CPU device: torchvision's decoder there
            from .decode import gpu_batches

            return gpu_batches(todo, preprocs, self.cfg.batch_size, self.device, threads=max(workers, 2), plan=plan)
        return cpu_batches(todo, preprocs, self.cfg.batch_size, workers, plan=plan)

    def _run(self, workers: int, progress: bool, stop_after: int | None) -> dict:
        preprocs = self._preprocs()
        todo, plan = resume_plan(self.samples, self.plan, self.progress.done)
        batches = 0
        pending: deque = deque()
        staged = None  # the batch whose device work is queued and whose copies to the host wait
        with image_progress("localizing", len(todo), progress) as advance:
            # a batch's results are copied to the host only once the next batch's device work is
            # queued behind it, so the device keeps working while this process decodes and
            # launches (the copies wait for the device)
            for batch in self._batches(todo, plan, preprocs, workers):
                queued = self._queue(todo, batch, preprocs)
                if staged is not None:
                    pending.append(self._launch(todo, *staged))
                staged = (batch, queued)
                while len(pending) >= _IN_FLIGHT or (len(pending) > 1 and pending[0].ready()):
                    self._commit(pending.popleft(), advance)
                    batches += 1
                    if stop_after is not None and batches >= stop_after:
                        return {}
            if staged is not None:
                pending.append(self._launch(todo, *staged))
            while pending:
                self._commit(pending.popleft(), advance)
        if not todo:
            self.progress.save()
        results = self.results()
        write_results(self.out, results)
        return results

    def _queue(self, todo: list[Sample], batch: Batch, preprocs) -> dict[str, SimpleNamespace]:
        """Every model's (every test size's) device work on a batch, queued without waiting for it."""
        if not batch.good:
            return {}
        labels = torch.tensor([todo[i].label for i, _ in batch.good])
        if self.device.type == "cuda":  # a pageable copy would wait for all the device work queued before it
            labels = labels.pin_memory().to(self.device, non_blocking=True)
        return {name: self._on_device(name, model, batch.stacked, labels, preprocs)
                for name, model in self.models.items()}

    def _launch(self, todo: list[Sample], batch: Batch, queued: dict[str, SimpleNamespace]) -> Launched:
        """Copy a queued batch's results to the host and hand its per-image work to the pool (or
        do it inline)."""
        good = [todo[i] for i, _ in batch.good]
        launched = Launched(good, [(todo[i].image_id, Problem(todo[i].image_id, info, "image skipped"))
                                   for i, info in batch.bad],
                            [Problem(todo[i].image_id, info[2], "") for i, info in batch.good if info[2]],
                            len(batch.good) + len(batch.bad))
        if not good:
            return launched
        parts = {name: self._to_host(dev) for name, dev in queued.items()}
        launched.mc = {name: part.mc for name, part in parts.items()}
        images = [ImageEntry.of(s, w, h) for s, (_, (w, h, _)) in zip(good, batch.good)]
        names = tuple(make_metrics(self.cfg.protocols, self.cfg.metric_options(), self.has_masks, self.cfg.metrics))
        cfg = ChunkConfig(self.cfg.metric_options(), names,
                          cam_threshold_grid() if "wsol" in self.cfg.protocols else None,
                          str(self.save_maps) if self.save_maps else None)
        per_chunk = max(4, -(-len(good) // max(1, 2 * self.box_workers)))
        for start in range(0, len(good), per_chunk):
            sl = slice(start, start + per_chunk)
            chunk = Chunk(cfg, images[sl], {name: part.rows(sl) for name, part in parts.items()})
            work = self.pool.submit(extract_chunk, chunk) if self.pool else extract_chunk(chunk)
            launched.parts.append((start, len(chunk.images), work))
        return launched

    def _cams(self, model, x, labels, maps: bool = True):
        """step_cams of the top-k classes and the labels; ``maps=False``: their classes, scores and
        the logits only (one forward, no maps)."""
        if self.cfg.precision == "bf16":
            x = x.contiguous(memory_format=torch.channels_last)
            ctx = torch.autocast(x.device.type, dtype=torch.bfloat16)
        else:
            ctx = contextlib.nullcontext()
        with ctx:
            if maps:
                return step_cams(model, x, layer=self.cfg.layer, method=self.cfg.method, classes="topk",
                                 k=self.cfg.topk, append_labels=labels, normalize=False)
            with torch.no_grad():
                logits = run_steps(model, x).logits
        cls = torch.cat([logits.topk(self.cfg.topk, -1).indices,
                         labels.reshape(-1, 1, 1).expand(-1, logits.shape[1], 1)], 2)
        return SimpleNamespace(logits=logits, class_ids=cls, scores=logits.float().softmax(-1).gather(2, cls), raw=None,
                               maps=None, layer=self.cfg.layer)

    def _model_part(self, name, model, stacked, labels, preprocs) -> ModelPart:
        """One model on one batch: classes, scores and boxes (or masks) of the cam protocol, the GT
        class's raw map of the wsol protocol, the most confident step; all on the host."""
        return self._to_host(self._on_device(name, model, stacked, labels, preprocs))

    def _on_device(self, name, model, stacked, labels, preprocs) -> SimpleNamespace:
        """The device work of :meth:`_model_part`, queued without waiting for it: `_queue` queues
        every model's (every test size's) before any copy to the host, and the copies of a batch
        wait until the next batch is queued, so the GPU is not idle while Python launches."""
        device = next(model.parameters()).device
        cams_of: dict[str, object] = {}
        need = {p: p == "wsol" or self.has_boxes or self.save_maps is not None for p in self.cfg.protocols}
        for proto in sorted(self.cfg.protocols, key=lambda p: not need[p]):  # with maps first: shareable
            key = f"{proto}:{name}"
            same = next((p for p in cams_of if preprocs[f"{p}:{name}"] == preprocs[key]), None)
            if same is not None and (need[same] or not need[proto]):
                cams_of[proto] = cams_of[same]
                continue
            x = preprocs[key].normalize(stacked[key].to(device, non_blocking=True))
            cams_of[proto] = self._cams(model, x, labels.to(device), need[proto])
        cams_of = {p: cams_of[p] for p in self.cfg.protocols}  # the protocols' order: "first" below
        first = next(iter(cams_of.values()))
        pre = preprocs.get(f"cam:{name}") or Preprocess.for_model(model)
        frame = InputFrame(pre.mode, pre.size, pre.resize)  # what workers need of it, without torch
        out = SimpleNamespace(name=name, model=model, cams_of=cams_of, first=first, frame=frame, size=pre.size,
                              mc=most_confident_step(first.logits.float())[0], maps=None, normalized=False,
                              cam_boxes=None)
        cam = cams_of.get("cam")
        if cam is not None and (cam.raw is not None or cam.maps is not None):
            maps, out.normalized = (cam.raw, False) if cam.raw is not None else (cam.maps, True)
            out.maps = maps.float()
            if _components_on_device(out.maps.device):
                out.cam_boxes = gradcam_rule_boxes(out.maps, (pre.size, pre.size), self.cfg.cam_ratio, out.normalized)
        return out

    def _to_host(self, dev: SimpleNamespace) -> ModelPart:
        """The :class:`ModelPart` of :meth:`_on_device`'s results (this is where the copies wait)."""
        first, cams_of = dev.first, dev.cams_of
        part = ModelPart(first.logits.shape[1], dev.frame, (dev.size, dev.size), dev.mc.cpu().numpy() - 1)  # index
        cam = cams_of.get("cam")
        if cam is not None:
            part.class_ids = cam.class_ids.cpu().numpy()
            part.scores = cam.scores.float().cpu().numpy()
        if dev.cam_boxes is not None:
            part.cam_boxes = dev.cam_boxes.cpu().numpy()
        elif dev.maps is not None:  # the CPU labels components faster with OpenCV, in the pool
            masks = gradcam_rule_masks(dev.maps.flatten(0, 2), part.size, self.cfg.cam_ratio, dev.normalized)
            bits = np.packbits(masks.flatten(1).cpu().numpy(), axis=1)
            part.cam_masks = bits.reshape(*dev.maps.shape[:3], -1)
        wsol = cams_of.get("wsol")
        if wsol is not None:
            if wsol.raw is None:
                raise TdvizError(f"The wsol protocol needs raw maps; method {self.cfg.method!r} gives only normalized "
                                 "ones: use a gradient method such as gradcam.")
            part.wsol_raw = wsol.raw[:, :, -1].float().cpu().numpy()
        if self.save_maps is not None:
            part.save = {"logits": first.logits.float().cpu().numpy()}
            if cam is not None:
                key = "cam_raw" if cam.raw is not None else "cam_maps"
                part.save[key] = (cam.raw if cam.raw is not None else cam.maps).float().cpu().numpy()
            part.meta = {"model": dev.name, "name": getattr(dev.model, "tdviz_name", None), "method": self.cfg.method,
                         "layer": first.layer, "cam_preprocess": asdict(dev.frame), "cam_ratio": self.cfg.cam_ratio}
        return part

    def _commit(self, launched: Launched, advance: Callable[[int], None]) -> None:
        """Count a launched batch, append its records, save the state: the batch is then done."""
        prog = self.progress
        prog.skip(launched.bad)
        prog.problems += launched.notes
        lines = []
        for start, n, work in launched.parts:
            res: ChunkResult = work.result() if self.pool else work
            chunk = launched.good[start:start + n]
            prog.skip([(p.where, p) for p in res.problems])
            prog.done.update(s.image_id for s in chunk)
            lines += res.lines
            ok = np.asarray(res.ok, np.int64)
            prog.images += len(ok)
            if len(ok):
                for name, rows in res.rows.items():
                    add_rows(prog.meters[name], rows, launched.mc[name][start + ok])
        prog.records_bytes = append_text(prog.records_file, "".join(lines))
        prog.save()
        advance(launched.size)
        self.timeline.append((time.perf_counter(), launched.size))

    # ------------------------------------------------------------------ results
    def results(self) -> dict:
        """Every measured metric per model and step (and "mc"), as plain numbers."""
        return results_of(self.progress.meters, self.progress.images, self.progress.problems,
                          self.cfg.to_dict(self.device.type))

