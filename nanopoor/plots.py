"""loss-curve pictures. matplotlib is imported here only, and only when a picture is made."""
from __future__ import annotations

from pathlib import Path

from harness.events import EVAL, STEP


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> None:
    # no software/date metadata: the same curve gives the same bytes
    fig.savefig(path, dpi=100, metadata={"Software": None})


def loss_curve(events: list[dict], path: Path, title: str, target: float | None = None) -> Path:
    """train loss per step and val loss per eval, against tokens (millions)."""
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
    save_png(fig, path)
    plt.close(fig)
    return path
