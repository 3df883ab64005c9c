"""Reading checkpoints safely and telling the user which model a file belongs to.

Reads the authors' ``.pth.tar`` files (``state_dict`` or ``state_dict_ema``, ``module.`` prefixes,
an ``argparse.Namespace`` under ``args``), plain torchvision/timm state dicts and safetensors.
Pickles are always read with ``weights_only=True``; the only class allowed beyond tensors and
builtins is ``argparse.Namespace``.
"""

from __future__ import annotations

import argparse
import pickle
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import TdvizError

_CONTAINER_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "net")
_PREFIXES = ("module.", "_orig_mod.", "model.")


class CheckpointError(TdvizError):
    """A checkpoint that cannot be read or does not fit the model."""


@dataclass
class LoadReport:
    """What :func:`load_weights` loaded: the file, which entry of it, and how many tensors."""

    path: str
    entry: str
    num_tensors: int


def read_state_dict(path: str | Path, ema: bool = False) -> tuple[dict[str, Tensor], str]:
    """The state dict stored in ``path`` and the name of the entry it came from.

    ``ema=True`` takes ``state_dict_ema`` when the file has one. Prefixes left by
    DataParallel/DDP (``module.``) or ``torch.compile`` (``_orig_mod.``) are removed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist: check the path.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return _strip_prefixes(load_file(str(path))), "safetensors"
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"Checkpoint {str(path)!r} is not a readable safetensors file ({exc}).") from exc
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} holds Python objects that tdviz refuses to unpickle for safety "
            f"({_first_line(exc)}): re-save it as a plain state dict, torch.save(model.state_dict(), path)."
        ) from exc
    except Exception as exc:  # torch.load fails in many ways on non-checkpoints (EOFError, KeyError, ...)
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is not a PyTorch checkpoint or is truncated ({_first_line(exc)})."
        ) from exc
    sd, entry = _pick_state_dict(obj, ema, path)
    return _strip_prefixes(sd), entry


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _pick_state_dict(obj, ema: bool, path: Path) -> tuple[dict[str, Tensor], str]:
    if not isinstance(obj, dict):
        raise CheckpointError(f"Checkpoint {str(path)!r} holds a {type(obj).__name__}, not a state dict.")
    if ema and "state_dict_ema" in obj:
        return obj["state_dict_ema"], "state_dict_ema"
    if ema:
        raise CheckpointError(f"Checkpoint {str(path)!r} has no 'state_dict_ema': load it without --ema.")
    for key in _CONTAINER_KEYS:
        if isinstance(obj.get(key), dict):
            return obj[key], key
    if obj and all(isinstance(v, Tensor) for v in obj.values()):
        return obj, "(top level)"
    raise CheckpointError(
        f"Checkpoint {str(path)!r} has no state dict (entries: {', '.join(map(str, list(obj)[:8]))})."
    )


def _strip_prefixes(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def load_weights(model: nn.Module, path: str | Path, ema: bool = False) -> LoadReport:
    """Load ``path`` into ``model`` with ``strict=True``.

    On a mismatch the error says what the file looks like (e.g. "ResNet50, joint attention, m=1,
    T=2, TD at layer3+layer4") and which registered model fits it, instead of listing keys.
    """
    sd, entry = read_state_dict(path, ema=ema)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in sd.items()}
    if expected != found:
        raise CheckpointError(_mismatch_message(model, path, expected, found))
    model.load_state_dict(sd, strict=True)
    return LoadReport(str(path), entry, len(sd))


def _mismatch_message(model: nn.Module, path, expected: dict, found: dict) -> str:
    name = getattr(model, "tdviz_name", type(model).__name__)
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [k for k in expected if k in found and expected[k] != found[k]]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if shapes:
        parts.append(f"{len(shapes)} of other shape (e.g. {shapes[0]} {found[shapes[0]]} vs {expected[shapes[0]]})")
    looks = describe_state_dict(found)
    fit = suggest_model(found)
    hint = f"try {format_call(*fit)}" if fit else "no registered model fits it exactly"
    return (f"Checkpoint {str(path)!r} does not fit {name} ({'; '.join(parts)} keys). "
            f"The file looks like {looks}: {hint}.")


_LAYER_BLOCK = re.compile(r"^layer(\d)\.(\d+)\.")
_STEP_BN = re.compile(r"^layer(\d)\.(\d+)\.bn(\d)_(\d+)\.weight$")


@dataclass
class ResNetLayout:
    """A ResNet configuration read off state-dict keys."""

    depth: int | None
    block: str
    layers: tuple[int, ...]
    num_classes: int | None
    td_blocks: dict[int, list[int]]
    attention: str | None  # "joint" / "top" for TD files
    steps: int
    m: int | None
    baseline: str | None  # "se" / "cbam" / "eca" / "fca"


def read_resnet_layout(shapes: dict[str, tuple]) -> ResNetLayout | None:
    """Recognise a (TD-)ResNet from its keys and shapes; ``None`` if it is not a ResNet."""
    if "conv1.weight" not in shapes or not any(_LAYER_BLOCK.match(k) for k in shapes):
        return None
    block = "bottleneck" if any(k.endswith(".conv3.weight") for k in shapes) else "basic"
    depths = Counter()
    for k in shapes:
        if (mt := _LAYER_BLOCK.match(k)) and k.endswith(".conv1.weight"):
            depths[int(mt.group(1))] += 1
    layers = tuple(depths[i] for i in range(1, 5))
    known = {("basic", (2, 2, 2, 2)): 18, ("basic", (3, 4, 6, 3)): 34, ("bottleneck", (3, 4, 6, 3)): 50,
             ("bottleneck", (3, 4, 23, 3)): 101}
    td_blocks: dict[int, list[int]] = {}
    attention = None
    for k in shapes:
        if ".RA_block." in k and (mt := _LAYER_BLOCK.match(k)):
            stage, idx = int(mt.group(1)), int(mt.group(2))
            if idx not in td_blocks.setdefault(stage, []):
                td_blocks[stage].append(idx)
            attention = "joint" if ".RA_block.Ug_top_mlp." in k or attention == "joint" else "top"
    step_bns: dict[int, set[int]] = {}
    steps = 1
    for k in shapes:
        if mt := _STEP_BN.match(k):
            step_bns.setdefault(int(mt.group(3)), set()).add(int(mt.group(4)))
            steps = max(steps, int(mt.group(4)) + 1)
    m = None
    if td_blocks:
        last = 3 if block == "bottleneck" else 2
        m = sum(1 for i in range(1, last + 1) if i in step_bns)
    baseline = None
    for kind, marker in (("cbam", ".attn.spatial_conv."), ("fca", ".attn.dct_weight"), ("eca", ".attn.conv."),
                         ("se", ".attn.mlp.")):
        if any(marker in k for k in shapes):
            baseline = kind
            break
    fc = shapes.get("fc.weight")
    return ResNetLayout(known.get((block, layers)), block, layers, fc[0] if fc else None,
                        {s: sorted(v) for s, v in sorted(td_blocks.items())}, attention, steps, m, baseline)


def describe_state_dict(shapes: dict[str, tuple]) -> str:
    """A one-line description of what a state dict holds, e.g. 'ResNet50, joint attention, m=1, T=2 ...'."""
    lay = read_resnet_layout(shapes)
    if lay is None:
        return f"a non-ResNet model with {len(shapes)} tensors (first key {next(iter(shapes), '-')})"
    name = f"ResNet{lay.depth}" if lay.depth else f"a {lay.block} ResNet of unusual depth"
    bits = [name]
    if lay.td_blocks:
        where = "+".join(f"layer{s}" + ("" if _all_blocks(lay, s) else f" blocks {','.join(map(str, b))}")
                         for s, b in lay.td_blocks.items())
        bits += [f"{lay.attention} attention", f"m={lay.m}", f"T={lay.steps}", f"TD at {where}"]
    elif lay.baseline:
        bits.append(f"{lay.baseline.upper()} attention")
    else:
        bits.append("no attention modules")
    if lay.num_classes:
        bits.append(f"{lay.num_classes} classes")
    return ", ".join(bits)


def _all_blocks(lay: ResNetLayout, stage: int) -> bool:
    depth = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}.get(lay.depth)
    return depth is not None and lay.td_blocks[stage] == list(range(depth[stage - 1]))


def format_call(name: str, overrides: dict) -> str:
    """``resnet50_tdjoint`` or ``create_model('resnet18_tdjoint', steps=3, m=1)``."""
    args = "".join(f", {k}={v!r}" for k, v in overrides.items())
    return f"create_model({name!r}{args})" if overrides else name


def suggest_model(shapes: dict[str, tuple]) -> tuple[str, dict] | None:
    """(name, overrides) of a ``create_model`` call whose state dict has exactly these keys and shapes."""
    from .models.registry import _REGISTRY, create_model

    lay = read_resnet_layout(shapes)
    candidates = list(_REGISTRY.values())
    if lay is not None:  # only ResNets of that block type and depth per stage can fit
        candidates = [s for s in candidates if tuple(s.kwargs.get("layers", ())) == lay.layers
                      and s.kwargs.get("block") == lay.block]
    for spec in candidates:
        overrides: dict = {}
        if lay is not None and lay.num_classes and lay.num_classes != spec.kwargs.get("num_classes", 1000):
            overrides["num_classes"] = lay.num_classes
        if spec.is_td and lay is not None and lay.td_blocks:
            for key, value in (("steps", lay.steps), ("m", lay.m), ("attention", lay.attention)):
                if getattr(spec.td, key) != value:
                    overrides[key] = value
        try:
            with torch.device("meta"):
                model = create_model(spec.name, **overrides)
        except (ValueError, TypeError):
            continue
        if {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes:
            return spec.name, overrides
    return None


def model_from_checkpoint(path: str | Path, ema: bool = False) -> nn.Module:
    """Build the registered model that fits ``path`` exactly and load it (no model name needed)."""
    from .models.registry import create_model

    sd, _ = read_state_dict(path, ema=ema)
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    fit = suggest_model(shapes)
    if fit is None:
        raise CheckpointError(f"No registered model fits checkpoint {str(path)!r} ({describe_state_dict(shapes)}): "
                              f"pass --model NAME with the model it was trained as.")
    model = create_model(fit[0], **fit[1])
    model.load_state_dict(sd, strict=True)
    return model
