"""What makes a `tdviz wsol` run the same run, and how its output folder is claimed and saved.

A run's **identity** is every input that changes a number: the models (registry name and a
digest of the weights each holds), the dataset (a fingerprint of the annotations as read and one
of the image files: paths and sizes) and the options (protocols, top-k, ratio, IoU threshold,
method, layer, device type). ``--resume`` continues a run only when the identity is the same and
names the setting that differs otherwise. ``--limit`` is not part of it: a run may be extended
to more images. Batch size and worker counts are not either: they change no number on a CPU,
and on a GPU only in the last float bits.

An output folder is **claimed** with an exclusive lock (``OUT/.tdviz-wsol.lock``, ``flock``,
released by the kernel when the process dies), so two runs can never write into one folder.
``state.json`` is replaced atomically, so an interruption (or a full disk) leaves the previous
one intact.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import TdvizError

__all__ = ["STATE_VERSION", "OutputLock", "RunIdentity", "RunProgress", "append_text", "dataset_fingerprint", "read_state", "run_identity", "write_json_atomic",
           "write_text_atomic"]

#: what each option of the identity is called on the command line
_FLAGS = {"protocols": "--protocol", "topk": "--topk", "cam_ratio": "--cam-ratio", "iou_threshold": "iou_threshold",
          "method": "--method", "layer": "--layer", "device": "--device"}


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def dataset_fingerprint(samples, problems) -> tuple[str, str]:
    """(annotations digest, images digest) of a dataset: the records as read (ids, labels, boxes,
    sizes, masks) and the problems found, and each image's path and size in bytes."""
    records, images = [], []
    for s in samples:
        records.append([s.image_id, int(s.label), s.boxes.tolist(), s.box_labels.tolist(), s.width, s.height,
                        [str(p) for p in s.mask_paths], None if s.ignore_path is None else str(s.ignore_path)])
        try:
            size = os.stat(s.path).st_size
        except OSError:
            size = None
        images.append([str(s.path), size])
    return _digest([records, list(problems)]), _digest(images)


@dataclass(frozen=True)
class RunIdentity:
    """Everything that must be equal for two runs to count their images into one result."""

    models: dict[str, dict]  # label -> {"name": registry name, "digest": state-dict SHA-256}
    annotations: str
    images: str
    options: dict

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunIdentity:
        return cls(d["models"], d["annotations"], d["images"], d["options"])

    def differences(self, saved: RunIdentity) -> list[str]:
        """What differs from ``saved`` (the run on disk), one phrase per setting."""
        out = []
        if list(saved.models) != list(self.models):
            out.append(f"the models (run: {', '.join(saved.models)}; now: {', '.join(self.models)})")
        else:
            for label, info in self.models.items():
                old = saved.models[label]
                if old["name"] != info["name"]:
                    out.append(f"model {label!r} (run: {old['name']}; now: {info['name']})")
                elif old["digest"] != info["digest"]:
                    out.append(f"the weights of {label!r} (--weights: digest {old['digest'][:12]} in the run, "
                               f"{info['digest'][:12]} now)")
        if saved.annotations != self.annotations:
            out.append("the annotations (--boxes)")
        if saved.images != self.images:
            out.append("the images (--data: other files, paths or sizes)")
        for key in sorted(set(saved.options) | set(self.options)):
            if saved.options.get(key) != self.options.get(key):
                out.append(f"{_FLAGS.get(key, key)} (run: {saved.options.get(key)}; now: {self.options.get(key)})")
        return out


def read_state(path: Path) -> dict:
    """A run's ``state.json``, or one sentence saying why it cannot be used."""
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise TdvizError(f"--resume: {path} is damaged ({type(exc).__name__}: {str(exc)[:120]}); the finished "
                         f"records are kept in {path.parent / 'records.jsonl'}: start a fresh --out.") from None
    if not isinstance(state, dict):
        raise TdvizError(f"--resume: {path} is damaged (not a JSON object): start a fresh --out.")
    return state


def write_json_atomic(path: Path, obj, indent: int | None = None) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file and ``os.replace``: the old file
    stays whole if the write fails (full disk, interruption)."""
    write_text_atomic(path, json.dumps(obj, indent=indent))


def named(exc: OSError, path: Path) -> OSError:
    """``exc`` naming ``path`` when it names no file (a failed write says only "No space left")."""
    return exc if exc.filename else OSError(exc.errno, exc.strerror, str(path))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise named(exc, path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def append_text(path: Path, text: str) -> int:
    """Append ``text`` to ``path``; returns the file's new size (a failed write names the file)."""
    try:
        with path.open("a") as fh:
            fh.write(text)
        return path.stat().st_size
    except OSError as exc:
        raise named(exc, path) from None


class OutputLock:
    """An exclusive claim on an output folder for as long as the run lives (``with OutputLock(out)``)."""

    def __init__(self, folder: Path, what: str = "tdviz wsol") -> None:
        self.path = Path(folder) / ".tdviz-wsol.lock"
        self.what = what
        self._fh = None

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.close()
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                fh2 = open(self.path)
                owner = fh2.read().strip() or "?"
                fh2.close()
                raise TdvizError(f"Another {self.what} is writing to {str(self.path.parent)!r} (process {owner}): "
                                 "wait for it to finish or choose another --out.") from None
            raise
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the lock
            self._fh = None


def run_identity(models: dict, dataset, config) -> RunIdentity:
    """The identity of evaluating ``models`` (label -> module) on ``dataset`` (all of it: ``limit``
    and shards are not part of it) with ``config`` (a :class:`~tdviz.wsol.config.WsolConfig`)."""
    from ..loading import state_digest

    annotations, images = dataset_fingerprint(dataset.samples, dataset.problems)
    devices = sorted({next(m.parameters()).device.type for m in models.values()})
    digests: dict[int, str] = {}  # one model under many labels (a resolution sweep's sizes) is hashed once
    for m in models.values():
        if id(m) not in digests:
            digests[id(m)] = state_digest(m)
    info = {label: {"name": getattr(m, "tdviz_name", type(m).__name__), "digest": digests[id(m)]}
            for label, m in models.items()}
    options = dict(config.identity_options("cuda" if "cuda" in devices else "cpu"), device=",".join(devices))
    return RunIdentity(info, annotations, images, options)


STATE_VERSION = 4  # 4: shards are whole batches (3: every n-th image), resumes keep the batches


class RunProgress:
    """What a run has counted so far, kept in ``state.json`` next to ``records.jsonl``: the meters,
    the images counted, the problems met (and the ids they cost) and the byte length of the records
    the meters count. :meth:`start` begins or continues a run in ``out`` (see :class:`WsolRun`'s
    rules for a folder that already holds one), :meth:`save` records a committed batch.

    ``make_meters()`` builds one model's meters per step key; ``unfit`` are (image id, problem)
    pairs skipped before any batch (labels a model cannot score).
    """

    def __init__(self, out: Path, identity: RunIdentity, config_dict: dict) -> None:
        self.out, self.identity, self.config_dict = Path(out), identity, config_dict
        self.state_file, self.records_file = self.out / "state.json", self.out / "records.jsonl"
        self.meters: dict[str, dict[str, dict]] = {}
        self.problems: list = []
        self.skipped_ids: list[str] = []
        self.done: set[str] = set()
        self.images = 0
        self.records_bytes = 0

    def start(self, resume: bool, overwrite: bool, fresh_meters: dict, dataset_problems: list, unfit: list,
              limit: int | None, kept_ids: set[str]) -> None:
        """Continue the run in ``out`` (``resume``), or begin one where none is (``overwrite``
        replaces one). ``fresh_meters``: model -> step -> metric -> meter for a new run."""
        has_records = self.records_file.exists() and self.records_file.stat().st_size > 0
        if resume and self.state_file.exists():
            self._load(limit, kept_ids)
            for f in (self.out / "results.json", self.out / "results.csv"):  # present only once finished
                f.unlink(missing_ok=True)
        elif resume and has_records:
            raise TdvizError(f"--resume: {self.state_file} is missing, so the {self.records_file.name} beside it "
                             "cannot be counted; keep that file and start a fresh --out (or pass --overwrite to "
                             "replace it).")
        elif (has_records or self.state_file.exists()) and not overwrite:
            raise TdvizError(f"{str(self.out)!r} already holds a tdviz wsol run: pass --resume to continue it, "
                             "--overwrite to replace it, or a fresh --out.")
        else:
            for f in (self.records_file, self.state_file, self.out / "results.json", self.out / "results.csv"):
                f.unlink(missing_ok=True)
            self.meters = fresh_meters
            self.problems = list(dataset_problems)
        self.skip(unfit)

    def skip(self, problems: list[tuple[str, object]]) -> None:
        """Record problems that each cost an image (by id), once per image."""
        for image_id, problem in problems:
            if image_id not in self.done:
                self.problems.append(problem)
                self.skipped_ids.append(image_id)
                self.done.add(image_id)

    def _load(self, limit: int | None, kept_ids: set[str]) -> None:
        from ..datasets.records import Problem
        from .results import meters_from_state

        state = read_state(self.state_file)
        if state.get("version") != STATE_VERSION:
            raise TdvizError(f"--resume: {self.state_file} was written by another tdviz version; start a fresh --out.")
        try:
            saved = RunIdentity.from_dict(state["identity"])
            self.meters = meters_from_state(state["meters"])
            self.problems = [Problem.from_dict(p) if isinstance(p, dict) else p for p in state["problems"]]
            self.skipped_ids = list(state["skipped_ids"])
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
        kept = self.records_file.read_text().splitlines() if size else []
        self.done = {json.loads(line)["image_id"] for line in kept} | set(self.skipped_ids)
        if limit is not None and self.done - kept_ids - set(self.skipped_ids):
            raise TdvizError(f"--resume: the run in {str(self.out)!r} counted more images than --limit {limit} "
                             "keeps; resume with the same or a larger --limit.")

    def save(self) -> None:
        """state.json for what has been committed (atomically)."""
        from .results import meters_to_state

        write_json_atomic(self.state_file, {
            "version": STATE_VERSION, "identity": self.identity.to_dict(), "config": self.config_dict,
            "images": self.images, "problems": [p.to_dict() if hasattr(p, "to_dict") else str(p)
                                                for p in self.problems],
            "skipped_ids": self.skipped_ids, "records_bytes": self.records_bytes,
            "meters": meters_to_state(self.meters)})
