"""The training steps of the demo zoo's runs: eager, or as CUDA graphs replayed side by side.

The zoo's models are small (widths 16-128), so an eager step is bound by the CPU launching its
kernels, not by the GPU: on an H200 the plain ResNet's step at batch 256 takes 17.6 ms of wall time
for 8 ms of GPU work, and the attention models launch more, smaller kernels. :class:`GraphSteps`
captures each run's whole step (forward, loss, backward, AdamW) once per input size and replays it,
each run on its own CUDA stream, so the kernels of the 21 runs fill the GPU together.

Both classes take the batches of one step, ``{seed: (images, labels)}``, and return each run's
loss; a run ``(name, seed)`` trains on its seed's batch. Capturing needs a few warm-up steps (for
cuDNN's algorithm choice and the optimizer's state); :class:`GraphSteps` undoes them, so a run's
weights, buffers and optimizer state after step k are those of k steps, as eagerly.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

LABEL_SMOOTHING = 0.1


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cache: bool = True) -> torch.Tensor:
    with torch.autocast(x.device.type, torch.bfloat16, enabled=x.device.type == "cuda", cache_enabled=cache):
        return F.cross_entropy(model(x), y, label_smoothing=LABEL_SMOOTHING)


class EagerSteps:
    """One run after the other on the current stream (any device)."""

    capture_seconds = 0.0

    def __init__(self, runs: dict, opts: dict, emas: dict):
        self.runs, self.opts, self.emas = runs, opts, emas

    def __call__(self, batches: dict, lr: float) -> dict:
        """Train every run one step on its seed's batch at learning rate ``lr``; the losses, detached."""
        losses = {}
        for key, model in self.runs.items():
            x, y = batches[key[1]]
            model.train()
            for group in self.opts[key].param_groups:
                group["lr"] = lr
            loss = _loss(model, x, y)
            self.opts[key].zero_grad(set_to_none=True)
            loss.backward()
            self.opts[key].step()
            if self.emas:
                self.emas[key].update_parameters(model)
            losses[key] = loss.detach()
        return losses


class GraphSteps:
    """Every run's step as a CUDA graph (one per input size), replayed on one stream per run.

    The optimizers must be built with ``capturable=True``; their learning rate becomes one shared
    tensor that :meth:`__call__` fills before the replays.
    """

    def __init__(self, runs: dict, opts: dict, emas: dict, device: torch.device):
        self.runs, self.opts, self.emas, self.device = runs, opts, emas, device
        self.lr = torch.zeros((), device=device)
        self.streams = {key: torch.cuda.Stream(device) for key in runs}
        self.size = None
        self.inputs: dict = {}  # seed -> (static images, static labels) for the current size
        self.graphs: dict = {}  # run -> (graph, static loss)
        self.capture_seconds = 0.0

    def _capture(self, key) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        model, opt = self.runs[key], self.opts[key]
        x, y = self.inputs[key[1]]
        for group in opt.param_groups:
            group["lr"] = self.lr
        model.train()
        saved_model = {k: v.clone() for k, v in model.state_dict().items()}
        saved_opt = {p: {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}
        warm = torch.cuda.Stream(self.device)
        warm.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(warm):
            for _ in range(3):
                opt.zero_grad(set_to_none=True)
                _loss(model, x, y, cache=False).backward()
                opt.step()
        torch.cuda.current_stream().wait_stream(warm)
        with torch.no_grad():  # undo the warm-up: the run goes on from where it was
            for k, v in model.state_dict().items():
                v.copy_(saved_model[k])
            for p, s in opt.state.items():  # state made by the warm-up itself goes back to a fresh optimizer's
                for k, v in s.items():
                    if p in saved_opt:
                        v.copy_(saved_opt[p][k])
                    else:
                        v.zero_()
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # the DataLoader pins memory meanwhile
            loss = _loss(model, x, y, cache=False)
            loss.backward()
            opt.step()
        return graph, loss.detach()  # no autograd graph kept alive between captures

    def __call__(self, batches: dict, lr: float) -> dict:
        """Train every run one step on its seed's batch at learning rate ``lr``; the losses, detached."""
        size = next(iter(batches.values()))[0].shape[-1]
        if size != self.size:  # a new input size: new static inputs and graphs
            self.graphs.clear()
            self.inputs = {s: (torch.empty_like(x), torch.empty_like(y)) for s, (x, y) in batches.items()}
            torch.cuda.empty_cache()
            self.size = size
        main = torch.cuda.current_stream()
        self.lr.fill_(lr)
        for seed, (x, y) in batches.items():
            self.inputs[seed][0].copy_(x)
            self.inputs[seed][1].copy_(y)
        if len(self.graphs) < len(self.runs):
            start = time.perf_counter()
            for key in self.runs:
                if key not in self.graphs:
                    self.graphs[key] = self._capture(key)
            torch.cuda.synchronize(self.device)
            self.capture_seconds += time.perf_counter() - start
        losses = {}
        for key, (graph, loss) in self.graphs.items():
            stream = self.streams[key]
            stream.wait_stream(main)
            with torch.cuda.stream(stream):
                graph.replay()
                losses[key] = loss.detach().clone()
                losses[key].record_stream(main)  # read later on the main stream
                if self.emas:
                    self.emas[key].update_parameters(self.runs[key])
        for stream in self.streams.values():
            main.wait_stream(stream)
        return losses
