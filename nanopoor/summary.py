"""one run's result as a short rich table or as json."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from supervisor.events import fmt_tokens
from nanopoor.output import print_json, print_json_array
from nanopoor.result import load_result, select

# the result keys a summary shows, in this order (nanopoor.result.RunResult names them all)
SUMMARY_KEYS = ("run_id", "record", "scale", "seed", "track", "class", "hardware_label", "status", "reason",
                "train_time_ms", "eval_time_ms", "warmup_time_ms", "wallclock_ms", "tokens", "budget_tokens",
                "val_loss", "target_val_loss", "track_version", "causal", "max_leak", "heldout_gap",
                "peak_memory_bytes", "t4_fit", "t4_limits", "compiles_in_timed")
STATUS_STYLE = {"completed": "green", "invalid": "red", "failed": "red", "killed": "yellow", "aborted": "yellow"}


def summary(run_dir: Path) -> dict:
    out = select(load_result(run_dir), SUMMARY_KEYS)
    out["run_dir"] = str(run_dir)
    return out


def print_summaries(rows: list[dict], fmt: str, console: Console | None = None) -> None:
    if fmt == "json":   # one run asked for: its object; several (--seeds N): an array of them
        print_json(rows[0]) if len(rows) == 1 else print_json_array(rows)
        return
    console = console or Console()
    for s in rows:
        tab = Table(title=f"run {s['run_id']}", show_header=False, title_justify="left")
        tab.add_column("key", style="bold")
        tab.add_column("value")
        style = STATUS_STYLE.get(s["status"], "white")
        tab.add_row("status", f"[{style}]{s['status']}[/]" + (f" — {s['reason']}" if s.get("reason") else ""))
        tab.add_row("record", f"{s['record']} ({s['scale']} scale, seed {s['seed']})")
        version = f" v{s['track_version']}" if s.get("track_version") is not None else ""
        tab.add_row("track / class", f"{s['track']}{version} / {s['class']} ({s['hardware_label']})")
        vl = s.get("val_loss")
        of_version = f", track version {s['track_version']}" if s.get("track_version") is not None else ""
        if s.get("target_val_loss") is not None:
            judged = f" (target {s['target_val_loss']}{of_version})"
        else:
            judged = f" (calibration run: track version {s.get('track_version')} has no target yet)"
        tab.add_row("val loss", (f"{vl:.4f}" if isinstance(vl, float) else "–") + judged)
        tab.add_row("train time", f"{(s['train_time_ms'] or 0) / 1000:.2f} s  (eval {(s['eval_time_ms'] or 0) / 1000:.2f} s, "
                    f"warm-up {(s['warmup_time_ms'] or 0) / 1000:.2f} s, wall-clock {(s['wallclock_ms'] or 0) / 1000:.2f} s)")
        tab.add_row("tokens", f"{fmt_tokens(s['tokens'] or 0)} of {fmt_tokens(s['budget_tokens'] or 0)} budget")
        leak = s.get("max_leak")
        tab.add_row("causal", _causal(s["causal"], leak))
        if s.get("peak_memory_bytes"):
            fit = s.get("t4_fit") or {}
            tab.add_row("peak memory", f"{s['peak_memory_bytes'] / 2**30:.2f} GiB; T4 fit: {fit.get('fits')}")
        tab.add_row("folder", s["run_dir"])
        console.print(tab)


def _causal(causal, leak) -> str:
    """yes / no with the measured leak, or why there is no answer (the run ended before the check)."""
    if causal is None:
        return "not checked (the run ended before the causality check)"
    return ("yes" if causal else "[red]no[/]") + (f" (max leak {leak:.2g})" if isinstance(leak, (int, float)) else "")
