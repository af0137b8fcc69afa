"""loss-curve pngs for review and reproduce. matplotlib is imported here, inside the function,
so parsing and reviewing without a plot never pay for it (~0.6 s). a png is written only where
the user asked for one (--plot, --plot-dir): reading a log never writes beside it."""
from __future__ import annotations

from pathlib import Path

from nanopoor.logs.model import ParsedRun


def write_loss_plot(curves: list[tuple[str, ParsedRun]], out_path: Path, *, target: float | None = None,
                    title: str = "") -> Path:
    """one line per run (val solid, train faint), one panel per metric (MLPerf's FID and CLIP are not
    one curve); x is tokens when every run has them, else steps. a run's own target (a benchmark's)
    is drawn in its panel, else `target`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(run.metric for _, run in curves)) or ["val_loss"]
    by_tokens = all(r.steps and all(p.tokens is not None for p in r.steps) for _, r in curves)
    fig, axes = plt.subplots(len(metrics), 1, figsize=(8, 4.5 * len(metrics) ** 0.7), dpi=110, squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics):
        targets = set()
        for label, run in curves:
            if run.metric != metric:
                continue
            x = (lambda p: p.tokens / 1e6) if by_tokens else (lambda p: p.step)
            train = run.train_points
            color = None
            if train:
                line, = ax.plot([x(p) for p in train], [p.train_loss for p in train], alpha=0.35, lw=1,
                                label=f"{label} train")
                color = line.get_color()
            val = run.val_points
            if val:
                ax.plot([x(p) for p in val], [p.val_loss for p in val], marker="o", ms=2.5, lw=1.5, color=color,
                        label=f"{label} val")
            own = run.target if run.target is not None else target
            if own is not None:
                targets.add(own)
        for t in sorted(targets):
            ax.axhline(t, color="k", ls="--", lw=0.8, label=f"target {t}")
        ax.set_xlabel("tokens (M)" if by_tokens else "step")
        ax.set_ylabel("loss (nats)" if metric == "val_loss" else metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    axes[0, 0].set_title(title)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, metadata={"Software": None})  # same curve, same bytes
    plt.close(fig)
    return out_path
