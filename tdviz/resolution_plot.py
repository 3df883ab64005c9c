"""Fig. 3 of the paper for a `tdviz resolution` run: top-1 against the test size, per model."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

__all__ = ["plot_resolution", "resolution_figure"]


def _panel(ax, rows, step_of, title: str, train_sizes: dict[str, int]) -> None:
    models = list(dict.fromkeys(r.model for r in rows))
    for i, model in enumerate(models):
        step = step_of(model)
        pts = sorted((r.size, r.top1) for r in rows if r.model == model and r.step == step and r.top1 is not None)
        if not pts:
            continue
        sizes, top1 = zip(*pts)
        ax.plot(sizes, top1, marker="os^vD<>pX*"[i % 10], markersize=4, linewidth=1.4, label=model)
    for size in sorted(set(train_sizes.values())):
        ax.axvline(size, color="0.6", linestyle=":", linewidth=1)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("test resolution (px, square)", fontsize=9)
    ax.set_ylabel("top-1 accuracy (%)", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def resolution_figure(run) -> Figure:
    """The figure (a :class:`matplotlib.figure.Figure`, no backend involved): the most confident
    step (the paper's rule for TD models) and the last step, with the train size dotted, and one
    legend under both panels (the table gives each model's best size)."""
    rows = run.rows
    train = {s.model: s.train_size for s in run.summary}
    last = {}
    for r in rows:
        if r.step != "mc":
            last[r.model] = max(last.get(r.model, 0), int(r.step))
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    _panel(axes[0], rows, lambda m: "mc", "most confident step (the paper's rule)", train)
    _panel(axes[1], rows, lambda m: str(last.get(m, 1)), "last step", train)
    axes[1].set_ylabel("")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize=7.5, frameon=False)
    return fig


def plot_resolution(run, stem: str | Path) -> list[Path]:
    """``<stem>.png`` (200 dpi) and ``<stem>.pdf`` (vector text) of :func:`resolution_figure`."""
    from .figures import save_figure

    return save_figure(resolution_figure(run), stem)
