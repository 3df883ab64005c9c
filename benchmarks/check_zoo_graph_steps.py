"""The demo zoo's CUDA-graph training steps against eager ones, on the same data (needs a GPU).

    python benchmarks/check_zoo_graph_steps.py

For four configurations: 8 steps (4 at 160 px, 4 at 224, lr rising) from the same weights, eager
and as graphs; prints both loss sequences, the largest difference of any weight or buffer after
the 8 steps (parameters and BatchNorm buffers apart), and the optimizer's step count. A loose check (bf16 autocast on random data): the
first loss must be equal and the rest close; it is not a proof that the two paths are equal.
Output of 2026-12-02 on an H200: ``benchmarks/results/train_demo_zoo_cuda_graphs_probe_h200/check_graphs.txt``.
"""
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from train_demo_zoo import param_groups
from zoo_steps import EagerSteps, GraphSteps

import tdviz


def compare(name: str, dev: torch.device) -> str:
    """One configuration, eager against graphs: a line with both loss sequences and the differences."""
    torch.manual_seed(0)
    base = tdviz.create_model(name).to(dev).to(memory_format=torch.channels_last)
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    oa = torch.optim.AdamW(param_groups(a, 0.05), lr=2e-3)
    ob = torch.optim.AdamW(param_groups(b, 0.05), lr=2e-3, capturable=True)
    eager = EagerSteps({(name, 0): a}, {(name, 0): oa}, {})
    graphs = GraphSteps({(name, 0): b}, {(name, 0): ob}, {}, dev)
    g = torch.Generator(device=dev).manual_seed(1)
    la, lb = [], []
    for step in range(8):
        size = 160 if step < 4 else 224
        x = torch.randn(64, 3, size, size, device=dev, generator=g).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (64,), device=dev, generator=g)
        lr = 1e-3 * (step + 1)
        la.append(float(eager({0: (x, y)}, lr)[(name, 0)]))
        lb.append(float(graphs({0: (x, y)}, lr)[(name, 0)]))
    params = max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))
    buffers = max((float((p - q).abs().max()) for p, q in zip(a.buffers(), b.buffers()) if p.is_floating_point()),
                  default=0.0)
    step = float(ob.state[next(iter(b.parameters()))]["step"])
    return (f"{name} eager {[round(v, 4) for v in la]} graph {[round(v, 4) for v in lb]} max |param diff| "
            f"{params:.2e} max |buffer diff| {buffers:.2e} opt step {step:.0f} capture {graphs.capture_seconds:.1f} s")


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here; CUDA graphs need one (run this on a GPU machine).")
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    for name in ["demo_resnet", "demo_resnet_cbam", "demo_resnet_fca", "demo_resnet_tdtop"]:
        print(compare(name, dev), flush=True)


if __name__ == "__main__":
    main()
