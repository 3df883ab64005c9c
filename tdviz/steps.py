"""The computation-step runner: a model seen at every step t = 1..T.

Semantics follow the authors' ``output_over_t``: the trunk (for ResNets: stem..layer3, whose TD
blocks run their full T) is computed once; the last stage is re-run with its TD blocks at
t = 1..T steps; step T equals ``model(x)``. A model without TD blocks has one step. The model is
neither modified nor left with hooks; it is run in eval mode and its train/eval flags restored.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .errors import TdvizError
from .models.base import SteppedModel
from .models.td import TDPass, record_td_passes


@dataclass
class StepOutputs:
    """Per-step results of :func:`run_steps`.

    * ``logits``: [B, T, num_classes].
    * ``activations``: layer name -> [B, T, ...] (the layer's output at each step; a layer in the
      trunk has the same value at every step; a layer that runs several times inside one step,
      such as a convolution a TD block re-runs, gives its last output of that step).
    * ``td_passes``: TD block name -> the passes of the model's full T-step computation, one
      :class:`TDPass` (searchlight S_t [B, C], spatial map A_t [B, H, W]) per t = 1..T-1.
    """

    logits: Tensor
    activations: dict[str, Tensor] = field(default_factory=dict)
    td_passes: dict[str, list[TDPass]] = field(default_factory=dict)
    #: layer name -> the tensor each step produced (the same object for a trunk layer); with
    #: ``grad=True`` these are the graph nodes to differentiate the step logits against
    step_tensors: dict[str, list[Tensor]] = field(default_factory=dict, repr=False)
    step_logits: list[Tensor] = field(default_factory=list, repr=False)

    @property
    def num_steps(self) -> int:
        return self.logits.shape[1]

    def most_confident(self) -> tuple[Tensor, Tensor]:
        """The paper's rule: per image, the step (from 1) whose top softmax probability is highest,
        and that step's logits."""
        return most_confident_step(self.logits)


def most_confident_step(logits: Tensor) -> tuple[Tensor, Tensor]:
    """For per-step logits [B, T, C]: (the chosen step [B], counted from 1 like every step number in
    tdviz, and that step's logits [B, C]).

    Ties go to the earliest step. (Before tdviz 0.2 the step was a 0-based index.)
    """
    conf = logits.softmax(-1).amax(-1)
    index = conf.argmax(1)
    return index + 1, logits[torch.arange(logits.shape[0], device=logits.device), index]


def _resolve_layers(model: nn.Module, layers: Iterable[str]) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    resolved = {}
    for name in layers:
        if name not in modules or name == "":
            near = difflib.get_close_matches(name, [n for n in modules if n], n=4, cutoff=0.4)
            hint = f" Nearest layer names: {', '.join(near)}." if near else ""
            raise TdvizError(f"Layer {name!r} is not in {getattr(model, 'tdviz_name', type(model).__name__)}.{hint}")
        module = modules[name]
        # A Sequential's output is its last child's; the runner calls stage blocks one by one,
        # so the container itself may never run.
        while isinstance(module, nn.Sequential) and len(module):
            module = module[-1]
        resolved[name] = module
    return resolved


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    training = [m for m in model.modules() if m.training]  # usually none: nothing to switch
    for m in training:
        m.training = False
    try:
        yield
    finally:
        for m in training:
            m.training = True


@contextlib.contextmanager
def _capture(modules: dict[str, nn.Module], store: dict[str, Tensor]):
    def make_hook(name):
        def hook(_module, _inputs, output):
            store[name] = output

        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in modules.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def run_steps(model: nn.Module, images: Tensor, layers: Iterable[str] = (), steps: int | None = None,
              grad: bool = False) -> StepOutputs:
    """Per-step logits, activations of ``layers`` and TD searchlight maps for ``images`` [B, 3, H, W].

    ``steps`` caps the number of steps (default: the model's T). With ``grad=True`` autograd
    records the computation (for gradient-based maps); otherwise it runs under ``no_grad``.
    """
    if images.dim() != 4:
        raise TdvizError(f"run_steps needs a batch of images [B, C, H, W]; got a tensor of shape {tuple(images.shape)}.")
    wanted = _resolve_layers(model, layers)
    names = {m: n for n, m in model.named_modules()}
    grad_ctx = contextlib.nullcontext() if grad else torch.no_grad()
    with _eval_mode(model), grad_ctx:
        if not isinstance(model, SteppedModel):
            store: dict[str, Tensor] = {}
            with _capture(wanted, store), record_td_passes() as passes:
                logits = model(images)
            missing = [n for n in wanted if n not in store]
            if missing:
                raise TdvizError(f"Layer {missing[0]!r} did not run in the forward pass, so it has no activation; pick a layer that does.")
            acts = {n: store[n].unsqueeze(1) for n in wanted}
            return StepOutputs(logits.unsqueeze(1), acts, _named(passes, names), {n: [store[n]] for n in wanted},
                               [logits])

        total = model.num_steps if steps is None else steps
        if not 1 <= total <= model.num_steps:
            raise TdvizError(f"steps={steps} is outside 1..{model.num_steps} for this model.")
        trunk_store: dict[str, Tensor] = {}
        with _capture(wanted, trunk_store), record_td_passes() as trunk_passes:
            feats = model.forward_trunk(images)
        step_logits, step_stores, last_passes = [], [], {}
        for t in range(1, total + 1):
            store = {}
            with _capture(wanted, store), record_td_passes() as passes:
                step_logits.append(model.forward_head(model.forward_stage(feats, steps=t)))
            step_stores.append(store)
            last_passes = passes
    acts, per_step = {}, {}
    for name in wanted:
        if name in step_stores[0]:
            per_step[name] = [s[name] for s in step_stores]
            acts[name] = torch.stack(per_step[name], 1)
        elif name in trunk_store:
            value = trunk_store[name]
            per_step[name] = [value] * total
            acts[name] = value.unsqueeze(1).expand(value.shape[0], total, *value.shape[1:])
        else:
            raise TdvizError(f"Layer {name!r} did not run in the forward pass, so it has no activation; pick a layer that does.")
    td = _named(trunk_passes, names)
    td.update(_named(last_passes, names))
    return StepOutputs(torch.stack(step_logits, 1), acts, td, per_step, step_logits)


def _named(passes: dict[nn.Module, list[TDPass]], names: dict[nn.Module, str]) -> dict[str, list[TDPass]]:
    """Key TD passes by their block's name (the TDAttention lives at ``<block>.RA_block``)."""
    out = {}
    for module, plist in passes.items():
        name = names[module]
        out[name.removesuffix(".RA_block")] = plist
    return out
