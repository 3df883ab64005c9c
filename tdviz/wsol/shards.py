"""One `tdviz wsol` run over several GPUs or machines: shards that merge themselves.

Shard ``i`` of ``n`` evaluates the batches ``i, i + n, i + 2n, ...`` of the run without shards
(after ``--limit``; :func:`tdviz.wsol.loader.shard_plan`) into ``OUT/shard-i-of-n/`` with its own
records, state and resume; no process talks to another. Whole batches, because a model's floats
can move in the last bits with the batch an image runs in. When a shard finishes it looks at the
others, and the last one to finish adds their meters
(:meth:`~tdviz.wsol.metrics.CamProtocolMeter.merge` and friends: integer counts, so the merged
numbers equal one run's exactly, on the same kind of device) and writes ``OUT/results.json``, ``results.csv`` and
``records.jsonl`` (the shards' records one shard after the other). Shards must share one run
identity (:mod:`tdviz.wsol.runstate`); a shard killed midway resumes on its own with ``--resume``.

Under ``torchrun --nproc-per-node N -m tdviz_cli.main wsol ...`` each process takes its shard
from ``RANK`` / ``WORLD_SIZE`` and its GPU from ``LOCAL_RANK``; by hand, ``tdviz wsol --shard
i/n`` on each machine, with a shared ``--out``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import TdvizError

__all__ = ["merge_shards", "parse_shard", "shard_dir", "shard_from_env"]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n), with a clear error for anything else."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        index, count = -1, 0
    if not 0 <= index < count:
        raise TdvizError(f"--shard {text!r} is invalid: use I/N with 0 <= I < N, e.g. --shard 0/4.")
    return index, count


def shard_from_env() -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) when torchrun started several processes, else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return int(os.environ.get("RANK", "0")), world


def shard_dir(out: str | Path, index: int, count: int) -> Path:
    """Where shard ``index`` of ``count`` keeps its files."""
    return Path(out) / f"shard-{index}-of-{count}"


def merge_shards(out: str | Path, count: int) -> dict | None:
    """Merge finished shards into ``out``; ``None`` (and nothing written) while one is unfinished.

    A shard is finished when its folder holds ``results.json`` (a run removes it when it starts or
    resumes). The shards must share one run identity and ``--limit``; ``out`` is locked while the
    merged files are written.
    """
    from ..datasets.records import Problem
    from .results import meters_from_state, results_of, write_results
    from .runstate import OutputLock, read_state

    out = Path(out)
    dirs = [shard_dir(out, i, count) for i in range(count)]
    if not all((d / "results.json").exists() and (d / "state.json").exists() for d in dirs):
        return None
    with OutputLock(out, "tdviz wsol shard merge"):
        states = [read_state(d / "state.json") for d in dirs]
        first = states[0]
        if any(s.get("identity") != first.get("identity") or s["config"].get("limit") != first["config"].get("limit")
               for s in states):
            raise TdvizError(f"The shards in {out} were run with different models, weights, data or settings; "
                             "rerun them alike (each with --resume where it was right).")
        meters = meters_from_state(first["meters"])
        for state in states[1:]:
            for model, steps in meters_from_state(state["meters"]).items():
                for step, ms in steps.items():
                    for kind, meter in ms.items():
                        meters[model][step][kind].merge(meter)
        problems = [Problem.from_dict(p) if isinstance(p, dict) else p for s in states for p in s["problems"]]
        results = results_of(meters, sum(int(s["images"]) for s in states), problems, first["config"])
        tmp = out / "records.jsonl.tmp"
        with tmp.open("w") as fh:
            for d, state in zip(dirs, states):
                if int(state["images"]) or (d / "records.jsonl").exists():  # a shard with no image has none
                    fh.write((d / "records.jsonl").read_text())
        os.replace(tmp, out / "records.jsonl")
        write_results(out, results)
    return dict(results, shards=count)
