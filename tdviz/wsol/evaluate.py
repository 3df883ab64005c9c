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
are appended per batch to ``records.jsonl`` and meter states saved atomically to ``state.json``,
so ``resume=True`` continues an interrupted run and ends with the same ``results.json``.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..cam import step_cams
from ..errors import TdvizError
from ..images import ImageError, Preprocess, read_image
from ..progress import image_progress
from ..steps import most_confident_step
from .annotations import WsolDataset, WsolSample
from .boxes import cam_boxes, resize_boxes_wsol, wsol_best_ious, wsol_scoremap
from .metrics import CamProtocolMeter, MaxBoxAccMeter, PxAPMeter, load_gt_mask

PROTOCOLS = ("cam", "wsol")


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
        return i, {k: p(img) for k, p in self.preprocs.items()}, (img.shape[1], img.shape[0])


def _collate(batch):
    """Stack the readable images per preprocessing in the loader worker (shared memory), so the
    main process gets one tensor per protocol instead of copying 100+ images itself."""
    good = [(i, info) for i, tensors, info in batch if tensors is not None]
    bad = [(i, info) for i, tensors, info in batch if tensors is None]
    keys = next((t for _, t, _ in batch if t is not None), {})
    stacked = {k: torch.stack([t[k] for _, t, _ in batch if t is not None]) for k in keys}
    return good, bad, stacked


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


def _box_to_original(box: np.ndarray, pre: Preprocess, width: int, height: int) -> list[float]:
    """An inclusive pixel box in the model input -> inclusive pixels of the original image.

    The box covers the continuous span [x0, x1 + 1); it is mapped through the preprocessing and
    turned back into inclusive pixels by rounding the span's ends.
    """
    x0, y0, x1, y1 = pre.box_to_original([box[0], box[1], box[2] + 1, box[3] + 1], width, height)
    return [round(x0), round(y0), max(round(x1) - 1, round(x0)), max(round(y1) - 1, round(y0))]


def gradcam_normalize(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """grad-cam's ``scale_cam_image`` twice (as ``step_cams``), in numpy/cv2 for worker processes."""
    m = raw.astype(np.float32) - raw.min()
    m = m / (1e-7 + m.max())
    m = np.maximum(cv2.resize(m, (size[1], size[0])), 0)
    m = m - m.min()
    return m / (1e-7 + m.max())


def extract_image(job: dict) -> dict:
    """Everything per image that needs no model: boxes per step and class (Grad-CAM rule, in
    original pixels), best IoU per wsolevaluation threshold, PxAP histograms. Runs in a worker."""
    out = {"cam_boxes": [], "v1": [], "v2": [], "hist": []}
    pre, width, height = job["pre"], job["width"], job["height"]
    for t in range(job["steps"]):
        if job["cam"] is not None:
            boxes = []
            for k in range(job["cam"].shape[1]):
                m = job["cam"][t, k]
                norm = m if job["cam_normalized"] else gradcam_normalize(m, (pre.size, pre.size))
                found = cam_boxes(norm.astype(np.float32), job["ratio"])
                boxes.append(_box_to_original(found[0], pre, width, height) if len(found) else [np.nan] * 4)
            out["cam_boxes"].append(np.asarray(boxes, np.float64))
        if job["wsol"] is not None:
            scoremap = wsol_scoremap(job["wsol"][t])
            gt = resize_boxes_wsol(np.asarray(job["gt_boxes"], np.float64).reshape(-1, 4), width, height)
            v1, v2 = wsol_best_ious(scoremap, gt, job["thresholds"])
            out["v1"].append(v1)
            out["v2"].append(v2)
            if job["masks"] is not None:
                fg, ignore = job["masks"]
                ignore = ignore & ~fg
                out["hist"].append((np.histogram(scoremap[fg], bins=job["edges"])[0],
                                    np.histogram(scoremap[~fg & ~ignore], bins=job["edges"])[0]))
    return out


class _HostCams:
    """A batch's maps, classes and scores copied to the host in one transfer each."""

    def __init__(self, cams) -> None:
        self.raw = None if cams.raw is None else cams.raw.float().cpu().numpy()
        self.maps = None if cams.maps is None else cams.maps.cpu().numpy()
        self.class_ids = cams.class_ids.cpu().numpy()
        self.scores = cams.scores.float().cpu().numpy()
        self.logits = cams.logits.float().cpu()


def _single_threaded() -> None:
    """Box workers run OpenCV on one thread each: N workers x OpenCV's default of one thread per
    core oversubscribes the machine."""
    cv2.setNumThreads(1)


class WsolRun:
    """One evaluation: models x steps x meters, with its files under ``out_dir``."""

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
        self.done: set[str] = set()
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
        if state["config"] != json.loads(json.dumps(asdict(self.cfg))) or sorted(state["models"]) != sorted(self.models):
            raise TdvizError(f"--resume: {self.state_file} was made with other settings or models "
                             f"({state['config']}, {state['models']}); rerun them or start a fresh --out.")
        kinds = {"cam": CamProtocolMeter, "maxboxacc_v2": MaxBoxAccMeter, "maxboxacc": MaxBoxAccMeter,
                 "pxap": PxAPMeter}
        self.meters = {m: {s: {k: kinds[k].from_state(v) for k, v in ms.items()} for s, ms in steps.items()}
                       for m, steps in state["meters"].items()}
        self.done = set(state["done"])
        self.skipped = state["skipped"]
        # drop records of a batch that was written after the last saved state
        if self.records_file.exists():
            kept = [line for line in self.records_file.read_text().splitlines()
                    if line and json.loads(line)["image_id"] in self.done]
            self.records_file.write_text("".join(k + "\n" for k in kept))

    def _save_state(self) -> None:
        state = {"config": asdict(self.cfg), "models": sorted(self.models), "done": sorted(self.done),
                 "skipped": self.skipped,
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
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: a forked child inherits the parent's OpenCV/OpenMP thread pools in
        # whatever state they are, and can deadlock in them
        self.pool = (ProcessPoolExecutor(box_workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_single_threaded) if box_workers > 0 else None)
        try:
            return self._run(workers, progress, stop_after)
        finally:
            if self.pool is not None:
                self.pool.shutdown()

    def _run(self, workers: int, progress: bool, stop_after: int | None) -> dict:
        preprocs = {}
        for name, model in self.models.items():
            if "cam" in self.cfg.protocols:
                preprocs[f"cam:{name}"] = Preprocess(mode=getattr(model, "tdviz_preprocess", "resize_crop"))
            if "wsol" in self.cfg.protocols:
                preprocs[f"wsol:{name}"] = Preprocess(mode="resize")
        todo = [s for s in self.samples if s.image_id not in self.done]
        loader = DataLoader(_Images(todo, preprocs), batch_size=self.cfg.batch_size, num_workers=workers,
                            collate_fn=_collate, pin_memory=torch.cuda.is_available())
        batches = 0
        with image_progress("localizing", len(todo), progress) as advance:
            pending = None  # extraction of batch i runs in the pool while batch i+1 is on the model
            for batch in loader:
                launched = self._launch(todo, batch, preprocs)
                if pending is not None:
                    self._commit(pending, advance)
                    batches += 1
                    if stop_after is not None and batches >= stop_after:
                        return {}
                pending = launched
            if pending is not None:
                self._commit(pending, advance)
        results = self.results()
        (self.out / "results.json").write_text(json.dumps(results, indent=1))
        self._write_csv(results)
        return results

    def _launch(self, todo, batch, preprocs) -> dict:
        """Run the models on a batch and hand its box extraction to the pool (or do it inline)."""
        good_idx, bad_idx, stacked = batch
        good = [(todo[i], None, info) for i, info in good_idx]
        bad = [(todo[i].image_id, info) for i, info in bad_idx]
        launched = {"good": good, "bad": bad, "models": {}, "size": len(good_idx) + len(bad_idx)}
        if not good:
            return launched
        labels = torch.tensor([s.label for s, _, _ in good])
        for name, model in self.models.items():
            device = next(model.parameters()).device
            maps_by_proto = {}
            for proto in self.cfg.protocols:
                key = f"{proto}:{name}"
                shared = next((k for k in maps_by_proto if preprocs[f"{k}:{name}"] == preprocs[key]), None)
                if shared is not None:
                    maps_by_proto[proto] = maps_by_proto[shared]
                    continue
                x = stacked[key].to(device, non_blocking=True)
                cams = step_cams(model, x, layer=self.cfg.layer, method=self.cfg.method, classes="topk",
                                 k=self.cfg.topk, append_labels=labels.to(device), normalize=False)
                maps_by_proto[proto] = _HostCams(cams)
            mc_step, _ = most_confident_step(next(iter(maps_by_proto.values())).logits)
            jobs = [self._job(name, b, sample, width, height, maps_by_proto, preprocs)
                    for b, (sample, _, (width, height)) in enumerate(good)]
            extracted = self.pool.map(extract_image, jobs, chunksize=4) if self.pool else list(map(extract_image, jobs))
            launched["models"][name] = (maps_by_proto, mc_step, extracted)
        return launched

    def _commit(self, launched: dict, advance) -> None:
        """Count a launched batch, append its records, save the state: the batch is then done."""
        records = []
        for image_id, problem in launched["bad"]:
            self.skipped.append(problem)
            self.done.add(image_id)
        good = launched["good"]
        per_image = {s.image_id: {"image_id": s.image_id, "label": int(s.label), "models": {}} for s, _, _ in good}
        for name, (maps_by_proto, mc_step, extracted) in launched["models"].items():
            for b, ((sample, _, _), ext) in enumerate(zip(good, extracted)):
                per_image[sample.image_id]["models"][name] = self._count(name, b, sample, ext, maps_by_proto,
                                                                         int(mc_step[b]))
        for sample, _, _ in good:
            self.done.add(sample.image_id)
            records.append(per_image[sample.image_id])
        with self.records_file.open("a") as fh:
            for r in records:
                fh.write(json.dumps(r) + "\n")
        self._save_state()
        advance(launched["size"])

    def _job(self, name, b, sample, width, height, maps_by_proto, preprocs) -> dict:
        cam = maps_by_proto.get("cam")
        wsol = maps_by_proto.get("wsol")
        if wsol is not None and wsol.raw is None:
            raise TdvizError(f"The wsol protocol needs raw maps; method {self.cfg.method!r} gives only normalized "
                             "ones: use a gradient method such as gradcam.")
        cam_maps, normalized = None, False
        if cam is not None:
            if cam.raw is not None:
                cam_maps = cam.raw[b]
            else:
                cam_maps, normalized = cam.maps[b], True
        masks = None
        if wsol is not None and self.has_masks:
            masks = load_gt_mask(sample.mask_paths, sample.ignore_path)
        pxap = next((ms["pxap"] for ms in self.meters[name].values() if "pxap" in ms), None)
        return {"steps": (cam or wsol).logits.shape[1], "cam": cam_maps, "cam_normalized": normalized,
                "pre": preprocs.get(f"cam:{name}", Preprocess()), "width": width, "height": height,
                "ratio": self.cfg.cam_ratio, "gt_boxes": sample.boxes,
                "wsol": None if wsol is None else wsol.raw[b, :, -1],
                "thresholds": self.meters[name]["mc"]["maxboxacc_v2"].thresholds if wsol is not None else None,
                "masks": masks, "edges": None if pxap is None else pxap.edges}

    def _count(self, name, b, sample, ext, maps_by_proto, mc_step) -> dict:
        """Feed one image's extracted boxes and IoUs to the meters of each step and of "mc"."""
        cam = maps_by_proto.get("cam")
        steps = (cam or maps_by_proto["wsol"]).logits.shape[1]
        rec = {"steps": [], "most_confident_step": mc_step + 1}
        k = self.cfg.topk
        for t in range(steps):
            step_rec = {}
            keys = (str(t + 1),) + (("mc",) if t == mc_step else ())
            for key in keys:
                ms = self.meters[name][key]
                if cam is not None:
                    boxes = ext["cam_boxes"][t]
                    ms["cam"].update(cam.class_ids[b, t, :k].tolist(), boxes[:k], sample.label, sample.boxes,
                                     gt_known_box=boxes[-1], gt_box_labels=sample.box_labels)
                if ext["v2"]:
                    ms["maxboxacc_v2"].update_ious(ext["v2"][t])
                    ms["maxboxacc"].update_ious(ext["v1"][t])
                    if ext["hist"] and "pxap" in ms:
                        ms["pxap"].update_histograms(*ext["hist"][t])
            if cam is not None:
                boxes = ext["cam_boxes"][t]
                step_rec.update(top5=cam.class_ids[b, t, :k].tolist(),
                                scores=[round(float(v), 4) for v in cam.scores[b, t, :k]],
                                top1_box=boxes[0].tolist(), gt_known_box=boxes[-1].tolist())
            if ext["v2"]:
                step_rec.update(best_iou_v2=round(float(np.max(ext["v2"][t])), 4))
            rec["steps"].append(step_rec)
        if self.save_maps is not None:
            self.save_maps.mkdir(parents=True, exist_ok=True)
            arrays = {f"{p}_raw": c.raw[b].astype(np.float16) for p, c in maps_by_proto.items() if c.raw is not None}
            arrays.update({f"{p}_class_ids": c.class_ids[b] for p, c in maps_by_proto.items()})
            np.savez_compressed(self.save_maps / f"{name}__{sample.image_id}.npz", **arrays)
        return rec

    # ------------------------------------------------------------------ results
    def results(self) -> dict:
        """Every metric per model and step (and "mc"), as plain numbers."""
        first = next(iter(next(iter(self.meters.values())).values()))
        counted = next(iter(first.values())).n if first else 0
        out = {"images": counted, "skipped": self.skipped, "config": asdict(self.cfg), "models": {}}
        for name, steps in self.meters.items():
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

    def _write_csv(self, results: dict) -> None:
        cols = ["top1_cls", "top5_cls", "top1_loc", "top5_loc", "gt_known_loc", "maxboxacc_v2", "maxboxacc", "pxap"]
        with (self.out / "results.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["model", "step"] + cols)
            for name, steps in results["models"].items():
                for step, row in steps.items():
                    w.writerow([name, step] + [("" if row.get(c) is None else f"{row[c]:.2f}") for c in cols])


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
             workers: int = 2, progress: bool = True, box_workers: int = 0) -> dict:
    """Evaluate ``models`` on ``dataset`` and write results.json, results.csv and records.jsonl."""
    if not dataset.samples:
        first = dataset.problems[0] if dataset.problems else "no record"
        raise TdvizError(f"No usable image in {dataset.source} ({first}).")
    run = WsolRun(models, dataset, out_dir, config or WsolConfig(), resume, save_maps)
    return run.run(workers, progress, box_workers=box_workers)
