"""loss-curve pngs for review and reproduce. matplotlib is imported here, inside the function,
so parsing and reviewing without a plot never pay for it (~0.6 s)."""
from __future__ import annotations

from pathlib import Path

from nanopoor.logs.model import ParsedRun


def write_loss_plot(curves: list[tuple[str, ParsedRun]], out_path: Path, *, target: float | None = None,
                    title: str = "") -> Path:
    """one line per run (val solid, train faint); x is tokens when every run has them, else steps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_tokens = all(r.steps and all(p.tokens is not None for p in r.steps) for _, r in curves)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for label, run in curves:
        x = (lambda p: p.tokens / 1e6) if by_tokens else (lambda p: p.step)
        train = run.train_points
        if train:
            line, = ax.plot([x(p) for p in train], [p.train_loss for p in train], alpha=0.35, lw=1,
                            label=f"{label} train")
            color = line.get_color()
        else:
            color = None
        val = run.val_points
        if val:
            ax.plot([x(p) for p in val], [p.val_loss for p in val], marker="o", ms=2.5, lw=1.5, color=color,
                    label=f"{label} val")
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=0.8, label=f"target {target}")
    ax.set_xlabel("tokens (M)" if by_tokens else "step")
    ax.set_ylabel("loss (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, metadata={"Software": None})  # same curve, same bytes
    plt.close(fig)
    return out_path
