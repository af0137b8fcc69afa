"""loss-curve pngs: a run's own curve (the runner's loss.png) and the curves of parsed logs
(review, reproduce). matplotlib is imported inside the functions, so parsing and reviewing
without a plot never pay for it (~0.6 s). a png is written only where asked for: the runner
writes loss.png into its run folder; review and reproduce only with --plot / --plot-dir, so
reading a log never writes beside it. pngs carry no software stamp: the same curve gives
the same bytes."""
from __future__ import annotations

from pathlib import Path

from supervisor.events import EVAL, STEP
from nanopoor.logs.model import ParsedRun


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path, dpi: float | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi if dpi is not None else "figure", metadata={"Software": None})
    plt.close(fig)
    return path


def loss_curve(events: list[dict], path: Path, title: str, target: float | None = None) -> Path:
    """a run's events.jsonl as one picture: train loss per step and val loss per eval (prefix
    evals dotted, full ones solid), against tokens (millions)."""
    plt = _pyplot()
    steps = [e for e in events if e.get("type") == STEP and isinstance(e.get("train_loss"), (int, float))]
    evals = [e for e in events if e.get("type") == EVAL and isinstance(e.get("val_loss"), (int, float))]
    fig, ax = plt.subplots(figsize=(7, 4))
    if steps:
        ax.plot([e["tokens"] / 1e6 for e in steps], [e["train_loss"] for e in steps], lw=1, alpha=0.7, label="train loss")
    for full, marker, lab in ((False, "o", "val loss (prefix)"), (True, "s", "val loss (full)")):
        pts = [e for e in evals if bool(e.get("full")) == full]
        if pts:
            ax.plot([e["tokens"] / 1e6 for e in pts], [e["val_loss"] for e in pts], marker=marker, ls="-" if full else ":", label=lab)
    if target is not None:
        ax.axhline(target, color="grey", ls="--", lw=0.8, label=f"target {target}")
    ax.set_xlabel("tokens (M)")
    ax.set_ylabel("loss (nats)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if steps or evals:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(plt, fig, path, dpi=100)


def write_loss_plot(curves: list[tuple[str, ParsedRun]], out_path: Path, *, target: float | None = None,
                    title: str = "") -> Path:
    """parsed logs' curves: one line per run (val solid, train faint), one panel per metric
    (MLPerf's FID and CLIP are not one curve); x is tokens when every run has them, else steps.
    a run's own target (a benchmark's) is drawn in its panel, else `target`."""
    plt = _pyplot()
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
    return _save(plt, fig, out_path)
