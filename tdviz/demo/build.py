"""Build (or reuse) the demo validation split on disk: parallel, cached, atomic."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .canvas import SOURCE_SPLIT, load_source
from .export import EXPORT_VERSION, SampleRecord, write_index_files, write_sample_files
from .fashion import CLASS_NAMES
from .generators import DEFAULT_VERSION, check_version, render_sample

__all__ = ["default_cache_dir", "make_demo_split", "split_dir_name"]

MANIFEST = "manifest.json"
_FORMAT = "tdviz-demo-split"
_STALE_TMP_S = 6 * 3600


def default_cache_dir() -> Path:
    """``$TDVIZ_CACHE/demo`` if ``TDVIZ_CACHE`` is set, else ``~/.cache/tdviz/demo``."""
    root = os.environ.get("TDVIZ_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "tdviz") / "demo"


def split_dir_name(n: int, seed: int, two_objects: bool = False, version: int = DEFAULT_VERSION) -> str:
    """Directory name of a cached validation split, e.g. ``fashion-clutter-v2.1-val-n5000-seed0``."""
    two = "-two" if two_objects else ""
    return f"fashion-clutter-v{check_version(version)}.{EXPORT_VERSION}-val-n{n}-seed{seed}{two}"


def _expected_manifest(n: int, seed: int, two_objects: bool, version: int) -> dict:
    return {"format": _FORMAT, "generator_version": version, "export_version": EXPORT_VERSION,
            "split": "val", "source_split": SOURCE_SPLIT["val"], "n": n, "seed": seed,
            "two_objects": two_objects}


def _read_manifest(path: Path) -> dict | None:
    try:
        with open(path / MANIFEST, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _matches(manifest: dict | None, expected: dict) -> bool:
    return manifest is not None and manifest.get("complete") is True and \
        all(manifest.get(k) == v for k, v in expected.items())


def _render_chunk(args) -> list[SampleRecord]:
    out_dir, start, stop, seed, two_objects, version = args
    images, labels = load_source("val")  # packaged Fashion-MNIST test set, never train
    return [write_sample_files(out_dir, render_sample("val", i, seed, images, labels, two_objects, version))
            for i in range(start, stop)]


def _worker_init(parent_pid: int) -> None:
    import cv2

    from ..processes import watch_parent

    cv2.setNumThreads(1)
    watch_parent(parent_pid)


def _readme(n: int, seed: int, two_objects: bool, version: int) -> str:
    return (
        f"Cluttered Fashion-MNIST validation split (tdviz demo, generator v{version}), n={n}, seed={seed}, "
        f"two_objects={two_objects}.\n"
        "Made by tdviz.demo.make_demo_split from the Fashion-MNIST *test* set (MIT, Zalando SE).\n"
        "Boxes are 0-based inclusive [x0, y0, x1, y1]; XML, Kaggle CSV and wsol/box/localization.txt\n"
        "hold them unchanged; COCO bbox = [x0, y0, x1-x0+1, y1-y0+1], category_id = label + 1.\n"
        "Class k <-> directory images/n%08d (see classes.json). Formats: images/ (ImageFolder),\n"
        "boxes_xml/ (ILSVRC XML), LOC_val_solution.csv + LOC_synset_mapping.txt (Kaggle),\n"
        "wsol/box and wsol/mask (clovaai/wsolevaluation metadata; data_root = mask_root = this\n"
        "directory), masks/ (0/255 PNG), instances_val.json (COCO, RLE), samples.jsonl (recipes).\n"
    )


def _generate(tmp: Path, n: int, seed: int, two_objects: bool, workers: int, version: int) -> dict:
    """Render and write all files into ``tmp``; the result depends only on the arguments."""
    chunk = max(1, min(250, -(-n // (4 * workers))))
    tasks = [(str(tmp), s, min(s + chunk, n), seed, two_objects, version) for s in range(0, n, chunk)]
    if workers <= 1 or len(tasks) == 1:
        results = [_render_chunk(t) for t in tasks]
    else:
        # spawn, not fork: a forked child inherits OpenCV's thread pool mid-use and can hang in it
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(os.getpid(),)) as pool:
            results = list(pool.map(_render_chunk, tasks))
    records = [r for chunk_records in results for r in chunk_records]
    write_index_files(tmp, records, CLASS_NAMES, "val")
    (tmp / "README.txt").write_text(_readme(n, seed, two_objects, version), encoding="utf-8")
    return {"n_images": len(records), "n_boxes": sum(len(r.boxes) for r in records)}


def _clean_stale_tmp(parent: Path, name: str) -> None:
    now = time.time()
    for p in parent.glob(f".{name}.*"):
        try:
            if now - p.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def make_demo_split(out_dir: str | os.PathLike | None = None, n: int = 5000, seed: int = 0,
                    two_objects: bool = False, workers: int | None = None,
                    version: int = DEFAULT_VERSION) -> Path:
    """Generate the cluttered Fashion-MNIST validation split and write every format.

    The split is built from the Fashion-MNIST test set shipped in the package
    (it never reads the train set) and written as described in
    :mod:`tdviz.demo.export`, plus ``manifest.json`` and ``README.txt``.

    Args:
        out_dir: the split directory; ``None`` means
            ``default_cache_dir() / split_dir_name(n, seed, two_objects)``.
        n: number of images.
        seed: split seed (same seed -> byte-identical files).
        two_objects: two objects of different classes per image.
        workers: processes to render with (default: the CPUs this process may use).
        version: canvas generator (:mod:`tdviz.demo.generators`; default: the shipped zoo's).

    Returns:
        the split directory. If it already holds a complete split with the same
        manifest (generator/export version, n, seed, variant) nothing is done.
        Otherwise the split is written into a temporary sibling directory that is
        renamed into place only when complete, so an interrupted run never leaves
        a directory that looks complete; an older tdviz split at ``out_dir`` is
        replaced, any other non-empty directory there is an error.
    """
    if n < 1:
        raise ValueError("n must be positive")
    version = check_version(version)
    final = Path(out_dir) if out_dir is not None else \
        default_cache_dir() / split_dir_name(n, seed, two_objects, version)
    final = final.expanduser().resolve()
    expected = _expected_manifest(int(n), int(seed), bool(two_objects), version)
    if _matches(_read_manifest(final), expected):
        return final
    if final.exists() and (not final.is_dir() or (any(final.iterdir()) and _read_manifest(final) is None)):
        raise FileExistsError(f"{final} exists and is not a tdviz demo split; choose another out_dir")
    final.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_tmp(final.parent, final.name)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        stats = _generate(tmp, int(n), int(seed), bool(two_objects), max(1, int(workers)), version)
        import cv2

        manifest = dict(expected, complete=True, canvas_size=224, class_names=list(CLASS_NAMES),
                        numpy=np.__version__, opencv=cv2.__version__, counts=stats)
        with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1)
            fh.write("\n")
        _install(tmp, final, expected)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _install(tmp: Path, final: Path, expected: dict) -> None:
    """Atomically move the finished ``tmp`` to ``final`` (replacing an older split)."""
    try:
        os.rename(tmp, final)  # works if final is absent or an empty directory
        return
    except OSError:
        pass
    if _matches(_read_manifest(final), expected):
        return  # a concurrent run finished the same split first; ours is discarded
    trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    os.rename(final, trash / "split")
    os.rename(tmp, final)
    shutil.rmtree(trash, ignore_errors=True)
