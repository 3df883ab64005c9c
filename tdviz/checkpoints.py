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
import warnings
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


def _kind(path: Path) -> str:
    """What a file is by its first bytes: "zip" (torch.save since 1.6), "pickle" (older torch.save),
    "tar" (torch 0.x), "safetensors", or "other"."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    if len(head) > 9 and int.from_bytes(head[:8], "little") < 100_000_000 and head[8:9] == b"{":
        return "safetensors"
    return "other"


def _unpickler_reason(exc: Exception) -> str:
    """The part of torch's weights-only error that says what was refused (its advice is left out)."""
    text = str(exc)
    tail = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip() and "weights_only" not in ln
             and "documentation" not in ln and "file an issue" not in ln]
    return lines[0] if lines else type(exc).__name__


def _refused_global(exc: Exception) -> str:
    """The Python name a refused pickle wanted to load (torch's message names it)."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return found.group(1) if found else "a Python object"


def read_state_dict(path: str | Path, ema: bool = False) -> tuple[dict[str, Tensor], str]:
    """The state dict stored in ``path`` and the name of the entry it came from.

    ``ema=True`` takes ``state_dict_ema`` when the file has one. Prefixes left by
    DataParallel/DDP (``module.``) or ``torch.compile`` (``_orig_mod.``) are removed. Every value
    must be a tensor. Pickles are read with ``weights_only=True``; one that needs any other Python
    object is refused, naming it.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"Checkpoint {str(path)!r} is a folder, not a checkpoint file: pass the "
                              ".pth/.pth.tar/.safetensors file itself.")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist: check the path.")
    try:
        kind = _kind(path)
    except OSError as exc:
        raise CheckpointError(f"Checkpoint {str(path)!r} cannot be read ({exc.strerror}): check its permissions.") \
            from None
    if path.suffix == ".safetensors" or kind == "safetensors":
        from safetensors.torch import load_file

        try:
            return _tensors_only(_strip_prefixes(load_file(str(path))), path), "safetensors"
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointError(f"Checkpoint {str(path)!r} is not a readable safetensors file "
                                  f"({_first_line(exc)[:160]}): re-export it.") from None
    if kind == "other":
        raise CheckpointError(f"Checkpoint {str(path)!r} is not a PyTorch checkpoint (it is neither a torch.save "
                              "zip archive, a pickle nor safetensors): pass the checkpoint file itself.")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note on pickle protocols, advice included
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(exc)
        if "GLOBAL" in reason:
            why = f"it asks for {_refused_global(exc)}, which is neither a tensor nor plain data"
        elif "truncated" in reason or "EOF" in reason:
            raise CheckpointError(f"Checkpoint {str(path)!r} is damaged or truncated ({reason[:120]}): copy or "
                                  "download it again.") from None
        else:
            why = f"it uses pickle features the safe loader does not read: {reason[:120]}"
        raise CheckpointError(
            f"Checkpoint {str(path)!r} holds Python objects that tdviz refuses to unpickle for safety ({why}): keep "
            "only its tensors where it was made, torch.save(model.state_dict(), path), or save them as .safetensors."
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch.load fails in many ways on damaged files
        raise CheckpointError(f"Checkpoint {str(path)!r} is damaged or truncated ({_short(exc)}): copy or "
                              "download it again.") from None
    sd, entry = _pick_state_dict(obj, ema, path)
    return _tensors_only(_strip_prefixes(sd), path), entry


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {_first_line(exc)[:120]}"


def _tensors_only(sd: dict, path: Path) -> dict[str, Tensor]:
    for key, value in sd.items():
        if not isinstance(value, Tensor):
            raise CheckpointError(f"Checkpoint {str(path)!r} has {key!r} = a {type(value).__name__}, not a tensor: "
                                  "it is not a state dict of weights.")
    return sd


def check_values(sd: dict[str, Tensor], expected: dict[str, Tensor], path) -> None:
    """Refuse tensors whose kind of number differs from the model's (floats for a float parameter,
    integers for a counter; any float precision is fine) or that hold NaN or infinity."""
    for key, value in sd.items():
        want = expected.get(key)
        if want is None:
            continue
        if value.is_complex() or value.is_floating_point() != want.is_floating_point() or \
                (value.dtype == torch.bool) != (want.dtype == torch.bool):
            raise CheckpointError(f"Checkpoint {str(path)!r} stores {key!r} as {value.dtype}, where the model "
                                  f"holds {want.dtype}: it is not a checkpoint of this model, or it was damaged.")
        if value.is_floating_point() and value.numel() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"Checkpoint {str(path)!r} has NaN or infinite values in {key!r}: the file is "
                                  "damaged or its training diverged; use another checkpoint.")


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


def _with_derived_buffers(sd: dict, own: dict) -> dict:
    """``sd`` plus the model's own FCA DCT filters where the file leaves them out: they follow from
    the architecture (tdviz's shipped fp16 weights omit them); a file that has them keeps its own.
    Works on tensors and on shapes alike."""
    from .models.attention import DERIVED_BUFFER

    return {**sd, **{k: v for k, v in own.items() if k.endswith(DERIVED_BUFFER) and k not in sd}}


def load_weights(model: nn.Module, path: str | Path, ema: bool = False) -> LoadReport:
    """Load ``path`` into ``model`` with ``strict=True``.

    Buffers that the architecture fixes (FCA's DCT filters) may be absent from the file.
    On a mismatch the error says what the file looks like (e.g. "ResNet50, joint attention, m=1,
    T=2, TD at layer3+layer4") and which registered model fits it, instead of listing keys.
    """
    sd, entry = read_state_dict(path, ema=ema)
    own = model.state_dict()
    sd = _with_derived_buffers(sd, own)
    expected = {k: tuple(v.shape) for k, v in own.items()}
    found = {k: tuple(v.shape) for k, v in sd.items()}
    if expected != found:
        raise CheckpointError(_mismatch_message(model, path, expected, found))
    check_values(sd, own, path)
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
    for kind, marker in (("cbam", ".attn.spatial_conv."), ("fca", ".attn.dct_weight"), ("fca", ".attn.fc."),
                         ("eca", ".attn.conv."),
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
    return stage <= len(lay.layers) and lay.td_blocks[stage] == list(range(lay.layers[stage - 1]))


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
    options = []
    for spec in candidates:
        overrides: dict = {}
        if lay is not None and lay.num_classes and lay.num_classes != spec.record.num_classes:
            overrides["num_classes"] = lay.num_classes
        if spec.is_td and lay is not None and lay.td_blocks:
            for key, value in (("steps", lay.steps), ("m", lay.m), ("attention", lay.attention)):
                if getattr(spec.td, key) != value:
                    overrides[key] = value
        options.append((spec, overrides))
    # a registered configuration as it is first, then the ones that need the fewest changes
    for spec, overrides in sorted(options, key=lambda o: len(o[1])):
        try:
            with torch.device("meta"):
                model = create_model(spec.name, **overrides)
        except (ValueError, TypeError):
            continue
        own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if own == _with_derived_buffers(shapes, own):
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
    sd = _with_derived_buffers(sd, model.state_dict())
    check_values(sd, model.state_dict(), path)
    model.load_state_dict(sd, strict=True)
    return model
