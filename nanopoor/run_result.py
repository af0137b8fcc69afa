"""the result of a finished run: its status (including the checks the runner makes out here that
turn a completed run invalid) and every key of nanopoor.result.RunResult that the run decides.

nanopoor.result holds the schema and writes result.json; the runner adds the files' digest."""
from __future__ import annotations

from datetime import datetime, UTC
from pathlib import Path

import supervisor
from supervisor import CONTRACT_VERSION
from supervisor.digest import package_files_digest
from supervisor.events import RECORD_START, RUN_END, T4_LIMITS, VIOLATION
from supervisor.judge import signal_name
from nanopoor import hardware
from nanopoor.crosscheck import event_findings
from nanopoor.event_reader import first
from nanopoor.jsonio import finite_or_none
from nanopoor.records import compute_digest, record_files
from nanopoor.result import git_info
from nanopoor.run_process import HARNESS_DIRS


def _status(events: list[dict], outcome: dict, config: dict) -> tuple[str, str]:
    end = first(events, RUN_END)
    if outcome["timed_out"]:
        return "killed", f"timeout: the run exceeded {outcome.get('timeout_s')} s and was stopped"
    if outcome["interrupted"]:
        return "aborted", "interrupted (Ctrl-C)"
    if outcome.get("terminated"):
        return "killed", "terminated (SIGTERM): the run was stopped from outside"
    if end is not None:
        after = events.index(end) < len(events) - 1
        violation = next((e for e in events if e.get("type") == VIOLATION), None)
        if end["status"] == "completed" and violation is not None:
            return "invalid", f"{violation.get('kind')}: {violation.get('detail')}"
        if end["status"] == "completed" and after:
            return "invalid", "events: lines were written after run_end (only the supervisor writes the event log)"
        findings = event_findings(config, events) if end["status"] == "completed" else []
        if findings:
            return "invalid", findings[0]
        return end["status"], end.get("reason") or ""
    rc = outcome["returncode"]
    if rc is not None and rc < 0:
        return "killed", f"the record's process was killed by signal {-rc} ({signal_name(-rc)})"
    return "failed", f"the run's supervisor exited with code {rc} without a run_end event (see log.txt)"


def build_result(rec, trk, config, events, outcome, started, harness_before, manifest: dict) -> dict:
    """the run's result: every key of nanopoor.result.RunResult but files, schema_version and result_sha256
    (run_record and write_result add those; tests/test_result_schema.py holds the two together)."""
    status, reason = _status(events, outcome, config)
    under_t4 = bool(config.get("as_t4")) and first(events, T4_LIMITS) is not None
    end = first(events, RUN_END) or {}
    torch_facts = (first(events, RECORD_START) or {}).get("torch") or {}
    smi = hardware.query_smi(outcome.get("devices")) if torch_facts.get("device", "cpu") != "cpu" else None
    hw = hardware.describe(smi, torch_facts)
    used = config["nproc"] if torch_facts.get("device", "cpu") != "cpu" else 0
    klass, hw_label = hardware.classify(hw, config["track"], used_gpus=used, device=torch_facts.get("device", "cpu"))
    train_ms, eval_ms, warm_ms = (float(end.get(k) or 0.0) for k in ("train_time_ms", "eval_time_ms", "warmup_time_ms"))
    if status == "completed":
        inside = train_ms + eval_ms + warm_ms
        if inside > outcome["wallclock_ms"]:
            status, reason = "invalid", f"clock: train + eval + warm-up ({inside:.0f} ms) exceed the outside wall-clock ({outcome['wallclock_ms']:.0f} ms)"
        elif package_files_digest(HARNESS_DIRS) != harness_before:
            status, reason = "invalid", "harness: the installed harness files changed during the run"
        elif compute_digest(rec.path) != config["record_sha256"]:
            status, reason = "invalid", "frozen digest: the record's files changed during the run"
    peak = end.get("peak_memory_bytes")
    dtypes = end.get("dtypes") or []
    t4_fit = None
    if klass != "dev":
        t4_fit = {"peak_memory_bytes": peak, "within_15gib": peak is not None and peak <= 15 * 2**30,
                  "no_bf16": not any("bfloat16" in d or "float8" in d for d in dtypes),
                  "dtypes": dtypes}
        t4_fit["fits"] = bool(t4_fit["within_15gib"] and t4_fit["no_bf16"])
    return {
        "run_id": config["run_id"], "record": rec.name, "record_sha256": config["record_sha256"],
        "record_title": rec.title, "author": rec.author, "track": trk.name, "dataset": trk.dataset,
        "dataset_fingerprint": end.get("dataset_fingerprint") or manifest.get("fingerprint"),
        "harness_version": supervisor.__version__, "contract_version": CONTRACT_VERSION,
        "seed": config["seed"], "scale": config["scale"], "hardware": hw, "class": klass, "hardware_label": hw_label,
        "nproc": config["nproc"], "status": status, "reason": reason,
        "train_time_ms": train_ms, "eval_time_ms": eval_ms, "warmup_time_ms": warm_ms,
        "checks_time_ms": end.get("checks_time_ms"), "wallclock_ms": outcome["wallclock_ms"],
        "tokens": end.get("tokens"), "budget_tokens": config["budget_tokens"], "formula": config["formula"],
        "steps": end.get("steps"), "declared_steps": config["steps"], "val_loss": finite_or_none(end.get("val_loss")),
        "val_loss_full": bool(end.get("val_loss_full", False)),
        # what this run is judged against, for good: a later target is a new track version
        "track_version": trk.version, "target_val_loss": trk.target_val_loss,
        "causal": end.get("causal"), "max_leak": end.get("max_leak"), "heldout_gap": end.get("heldout_gap"),
        "compiles_in_timed": end.get("compiles_in_timed"), "peak_memory_bytes": peak, "t4_fit": t4_fit,
        "t4_limits": under_t4,
        "epochs": end.get("epochs"), "violations": end.get("violations", []),
        "progress_evals": end.get("progress_evals"), "progress_eval_tokens": end.get("progress_eval_tokens"),
        "eval_charged_ms": end.get("eval_charged_ms"), "data_watch": end.get("data_watch"),
        "source_flags": end.get("source_flags"), "train_span_ms": end.get("train_span_ms"),
        "isolated": bool(end.get("isolated")), "setup_ms": end.get("setup_ms"), "claim": end.get("claim"),
        "harness_sha256": harness_before, "record_files": record_files(rec.path),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(Path(rec.path)), "returncode": outcome["returncode"],
        "reproduces": config.get("reproduces"), "machine": hardware.machine_id(),
    }
