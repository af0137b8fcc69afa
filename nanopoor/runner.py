"""the runner: launches a record as a child process under the harness and writes its run folder.

the wall-clock is measured out here, around the whole child; the clock inside the child must
account for less than it. nothing in a run folder is ever overwritten."""
from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, UTC
from pathlib import Path

import harness
from harness import CONTRACT_VERSION, t4_limits
from harness.integrity import package_files_digest
from harness.tracks import get_track
from nanopoor import hardware
from nanopoor.display import Display, RunState
from nanopoor.errors import UserError
from nanopoor.jsonio import finite_or_none
from harness.events import RUN_END, RUN_START, STEP, T4_LIMITS, VIOLATION, fmt_tokens
from nanopoor.output import DEV_RUNS, RANKED_RUNS, default_runs_dir
from nanopoor.event_reader import EventTail, first, read_events
from nanopoor.crosscheck import event_findings
from nanopoor.records import check_frozen, compute_digest, load_record, record_files, refuse_uncovered, stage
from nanopoor.result import files_digest, git_info, write_result

HARNESS_DIR = Path(harness.__file__).parent
KILL_GRACE_S = 10.0
# the text the project's datasets are built from: a record that read it would get val and train
# tokens around the stream, so it is guarded like the dataset folder itself
CORPUS_DIR = HARNESS_DIR.parent / "corpus"


def guarded_sources() -> tuple[list[str], list[str]]:
    """(folders, files) of the project's corpus, guarded in the record's process and watched."""
    if not CORPUS_DIR.is_dir():
        return [], []
    files = sorted(str(p.resolve()) for p in CORPUS_DIR.rglob("*") if p.is_file())
    return [str(CORPUS_DIR.resolve())], files


def new_seed() -> int:
    """harness-assigned seeds are drawn fresh, so nobody can pick the lucky ones in advance."""
    return secrets.randbelow(2**31 - 1) + 1


def resolve_data(track, data_dir: str | Path | None) -> tuple[Path, dict]:
    """the dataset folder for the track and its manifest: complete, shards intact, the track's dataset."""
    from nanopoor.data.manifest import ensure_dataset

    d = Path(data_dir) if data_dir else Path("data") / track.dataset
    m = ensure_dataset(d)
    if m.get("dataset") != track.dataset:
        raise UserError(f"dataset at {d} is '{m.get('dataset')}', but track {track.name} needs '{track.dataset}': "
                        f"pass --track {m.get('dataset')} or --data with a '{track.dataset}' dataset")
    return d, m


def has_gpu() -> bool:
    """an nvidia gpu this machine can use (nvidia-smi answers), without importing torch."""
    return hardware.query_smi() is not None


def _measured_rate(record: str, scale: str) -> tuple[float, Path] | None:
    """tokens per second of training that an earlier cpu run of the record measured on this machine
    (the last step event of a run folder in dev-runs/ or runs/), with the folder it came from."""
    for root in (DEV_RUNS, RANKED_RUNS):
        for cfg_path in sorted(Path(root).glob(f"*-{record}-{scale}-*/config.json"), reverse=True):
            steps = [e for e in read_events(cfg_path.parent / "events.jsonl") if e.get("type") == STEP]
            try:
                cpu = json.loads((cfg_path.parent / "result.json").read_text()).get("hardware_label") == "cpu"
            except (OSError, ValueError):
                cpu = not has_gpu()   # a run cut short has no result.json: it ran here
            if cpu and steps and steps[-1].get("train_time_ms"):
                return steps[-1]["tokens"] / (steps[-1]["train_time_ms"] / 1000), cfg_path.parent
    return None


def _gpu_reference(rec, scale: str) -> str:
    """what the record took on a gpu: its fastest committed run, else its published claim."""
    best = None
    for res_path in Path(RANKED_RUNS).glob(f"*-{rec.name}-{scale}-*/result.json"):
        try:
            r = json.loads(res_path.read_text())
        except (OSError, ValueError):
            continue
        if r.get("status") == "completed" and r.get("hardware_label") != "cpu":
            if best is None or r["train_time_ms"] < best["train_time_ms"]:
                best = r
    if best is not None:
        seconds = best["train_time_ms"] / 1000
        took = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
        return f"on {best['hardware_label']} it trained in {took}"
    claim = next((c for c in rec.claims if c.get("time_min")), None)
    if claim is not None:
        return f"its claim: {claim['time_min']} min on {claim.get('hardware', 'a gpu')}"
    return "no gpu timing of it is committed"


def cpu_cost(rec, scale: str, tokens: int) -> str:
    """what `tokens` of training would cost on this cpu, from an earlier run here, else what is known."""
    measured = _measured_rate(rec.name, scale)
    if measured is None:
        return f"{fmt_tokens(tokens)} tokens of training, not yet timed on this cpu; {_gpu_reference(rec, scale)}"
    rate, folder = measured
    hours = tokens / rate / 3600
    return (f"{fmt_tokens(tokens)} tokens at the {rate:.0f} tokens/s that {folder.as_posix()} measured here: "
            f"about {hours:.1f} h")


def preflight(record_dir: str | Path, scale: str, *, track: str | None = None, data_dir=None, n_runs: int = 1,
              allow_cpu: bool = False, verb: str = "run") -> list[str]:
    """what a run needs, said before anything starts: a gpu for a full-scale run (refused on a cpu
    unless allow_cpu) and its dataset (fineweb-edu: built over the network). raises one UserError
    naming every missing need; returns notes to print when it may go ahead."""
    from nanopoor.data.manifest import build_hint

    rec = load_record(record_dir)
    sc = rec.scale(scale)
    trk = get_track(track or sc["track"])
    needs, notes, nxt = [], [], []
    if scale == "full" and not has_gpu():
        cost = cpu_cost(rec, scale, sc["budget_tokens"] * n_runs)
        if allow_cpu:
            notes.append(f"no gpu here: {rec.name} runs at full scale on the cpu as asked; {cost}")
        else:
            needs.append(f"a gpu: this machine has none (on its cpu: {cost})")
            nxt = ["run it on a gpu (README: T4 on Colab or Kaggle)", "try --scale smoke",
                   "pass --allow-cpu to run it here anyway"]
    data = Path(data_dir) if data_dir else Path("data") / trk.dataset
    if not (data / "manifest.json").is_file():
        net = " (it streams from the Hugging Face Hub: needs the network)" if trk.dataset == "fineweb-edu" else ""
        needs.append(f"the {trk.dataset} dataset at {data.as_posix()}: build it with `{build_hint(data)}`{net}")
    if needs:
        raise UserError(f"{verb} {rec.path.as_posix()} --scale {scale} needs " + "; and ".join(needs)
                        + (". Next: " + ", or ".join(nxt) if nxt else ""))
    return notes


def run_seeds(record_dir: str | Path, n: int = 1, *, scale: str = "smoke", seed: int | None = None,
              data_dir=None, runs_dir: str | Path | None = None, track: str | None = None, allow_cpu: bool = False,
              on_note=None, **kw) -> list[Path]:
    """`nanopoor run`: the preflight (its notes to on_note before anything starts), then n runs of a
    record one after another, each with its own harness-assigned seed unless seed fixes the one run's.
    runs_dir [default: runs/ for a full-scale run on a gpu, else dev-runs/]."""
    for note in preflight(record_dir, scale, track=track, data_dir=data_dir, n_runs=n, allow_cpu=allow_cpu):
        if on_note is not None:
            on_note(note)
    runs_dir = runs_dir or default_runs_dir(scale, has_gpu())
    return [run_record(record_dir, scale=scale, seed=seed, data_dir=data_dir, out_root=runs_dir, track=track, **kw)
            for _ in range(n)]


def run_record(record_dir: str | Path, *, scale: str = "smoke", seed: int | None = None, data_dir=None,
               out_root: str | Path = "runs", timeout_s: float | None = None, track: str | None = None,
               nproc: int = 1, quiet: bool = False, env: dict[str, str] | None = None,
               reproduces: str | None = None, as_t4: bool = False) -> Path:
    """run one seed of a record; returns the run folder (always written, whatever the status).

    env: variables set for the record's process only (submit --parallel gives each run its gpu
    through CUDA_VISIBLE_DEVICES this way, since runs in threads share os.environ).
    reproduces: the run_id of a committed run this one re-runs (`nanopoor reproduce RUN_FOLDER`).
    as_t4: the harness holds the run to one T4's limits (harness/t4_limits.py) on any device."""
    rec = load_record(record_dir)
    record_sha = check_frozen(rec)
    refuse_uncovered(rec.path, "run")  # before the run folder exists: a refused run leaves nothing behind
    sc = rec.scale(scale)
    trk = get_track(track or sc["track"])
    data, manifest = resolve_data(trk, data_dir)
    seed = new_seed() if seed is None else int(seed)
    started = datetime.now(UTC)
    run_id = f"{started:%Y%m%dT%H%M%SZ}-{rec.name}-{scale}-s{seed}-{secrets.token_hex(2)}"
    run_dir = Path(out_root) / run_id
    run_dir.mkdir(parents=True, exist_ok=False)  # a run folder is new or the run does not start
    config = {
        "run_id": run_id, "record": rec.name, "record_sha256": record_sha, "scale": scale, "seed": seed,
        "track": trk.to_dict(), "data_dir": str(data.resolve()), "seq_len": sc["seq_len"],
        "batch_size": sc["batch_size"], "grad_accum": sc["grad_accum"], "steps": sc["steps"],
        "budget_tokens": sc["budget_tokens"], "formula": sc["formula"], "args": sc["args"],
        "warmup_cap_s": sc.get("warmup_cap_s", 900), "run_dir": str(run_dir.resolve()),
        "contract_version": CONTRACT_VERSION, "nproc": nproc, "reproduces": reproduces, "as_t4": bool(as_t4),
    }
    config["guarded_dirs"], config["guarded_files"] = guarded_sources()
    (run_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    harness_before = package_files_digest(HARNESS_DIR)
    # the run executes a fresh copy of exactly the digested files, never the record folder itself
    with tempfile.TemporaryDirectory(prefix="nanopoor-record-") as tmp:
        staged = stage(rec, Path(tmp) / rec.path.name)
        outcome = _launch(rec, run_dir, config, timeout_s, nproc, quiet, staged / rec.entrypoint, env or {})
    events = read_events(run_dir / "events.jsonl")
    result = _result(rec, trk, config, events, outcome, started, harness_before, manifest)
    from nanopoor.loss_plot import loss_curve

    loss_curve(events, run_dir / "loss.png", f"{rec.name} ({scale}, seed {seed}) — {result['status']}", trk.target_val_loss)
    result["files"] = files_digest(run_dir)
    write_result(run_dir, result)
    return run_dir


CPU_MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(4 << 30)}


def _command(entry: str, nproc: int) -> list[str]:
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                "-m", "harness.launch", entry]
    return [sys.executable, "-m", "harness.launch", entry]


def _launch(rec, run_dir: Path, config: dict, timeout_s, nproc: int, quiet: bool, entry: Path, extra_env: dict) -> dict:
    # PYTHONSAFEPATH: no cwd on sys.path (inherited by torchrun's children), so a `harness/` folder
    # in the current directory cannot stand in for the one whose digest the runner checks
    env = {**os.environ, **extra_env, "NANOPOOR_CONFIG": str(run_dir / "config.json"), "PYTHONUNBUFFERED": "1", "PYTHONSAFEPATH": "1",
           "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HARNESS_DIR.parent), os.environ.get("PYTHONPATH")]))}
    if shutil.which("nvidia-smi") is None:
        # a cpu run allocates and frees the (B, T, 100k) logits every step: glibc hands such blocks
        # back to the kernel (mmap/munmap) and faults them in again, which took more time than the
        # matmuls (the 60-step demo on 2 cores: 71.6 s → 30.6 s of train time). the user's own settings win.
        for key, value in CPU_MALLOC_ENV.items():
            env.setdefault(key, value)
    state = RunState(rec.name, config["steps"], config["budget_tokens"])
    tail = EventTail(run_dir / "events.jsonl")
    lines: queue.Queue = queue.Queue()
    t0 = time.perf_counter()
    with open(run_dir / "log.txt", "w", encoding="utf-8") as log:
        proc = subprocess.Popen(_command(str(entry), nproc), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                text=True, errors="replace", bufsize=1, start_new_session=True)
        reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
        reader.start()
        outcome = {"timed_out": False, "interrupted": False, "timeout_s": timeout_s,
                   "devices": env.get("CUDA_VISIBLE_DEVICES")}
        with Display(state, quiet=quiet) as disp:
            try:
                while proc.poll() is None:
                    _drain(lines, log, disp)
                    for e in tail.poll():
                        state.fold(e)
                    disp.update()
                    if timeout_s is not None and time.perf_counter() - t0 > timeout_s:
                        outcome["timed_out"] = True
                        _stop(proc, signal.SIGTERM)
                        break
                    time.sleep(0.1)
            except KeyboardInterrupt:
                outcome["interrupted"] = True
                _stop(proc, signal.SIGINT)
            proc.wait()
            reader.join(timeout=5)
            _drain(lines, log, disp)
            for e in tail.poll():
                state.fold(e)
    outcome["returncode"] = proc.returncode
    outcome["wallclock_ms"] = (time.perf_counter() - t0) * 1000
    return outcome


def _pump(stream, q: queue.Queue) -> None:
    for line in stream:
        q.put(line)
    q.put(None)


def _drain(q: queue.Queue, log, disp: Display) -> None:
    while True:
        try:
            line = q.get_nowait()
        except queue.Empty:
            return
        if line is None:
            return
        log.write(line)
        log.flush()
        disp.line(line.rstrip("\n"))


def _stop(proc: subprocess.Popen, sig: int) -> None:
    """signal the child's whole process group, then SIGKILL it if it does not end in time."""
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def rank_failures(run_dir: Path) -> list[dict]:
    """what ranks other than 0 wrote when they failed (rank<N>_error.json, from harness.launch)."""
    out = []
    for p in sorted(Path(run_dir).glob("rank*_error.json")):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            out.append({"rank": p.stem, "reason": f"unreadable {p.name}"})
    return out


def _status(events: list[dict], outcome: dict, config: dict) -> tuple[str, str]:
    end = first(events, RUN_END)
    if outcome["timed_out"]:
        return "killed", f"timeout: the run exceeded {outcome.get('timeout_s')} s and was stopped"
    if outcome["interrupted"]:
        return "aborted", "interrupted (Ctrl-C)"
    failed = [f for f in outcome.get("rank_failures", []) if f.get("status") in ("failed", "invalid", None)]
    if failed and (end is None or end["status"] != "invalid"):
        # torchrun stops the other ranks when one fails: the root cause is the failed rank
        f = failed[0]
        return f.get("status") or "failed", f"rank {f.get('rank')}: {f.get('reason')}"
    if end is not None:
        after = events.index(end) < len(events) - 1
        violation = next((e for e in events if e.get("type") == VIOLATION), None)
        if end["status"] == "completed" and violation is not None:
            return "invalid", f"{violation.get('kind')}: {violation.get('detail')}"
        if end["status"] == "completed" and after:
            return "invalid", "events: lines were written after run_end (only the harness writes the event log)"
        findings = event_findings(config, events) if end["status"] == "completed" else []
        if findings:
            return "invalid", findings[0]
        return end["status"], end.get("reason") or ""
    rc = outcome["returncode"]
    if rc is not None and rc < 0:
        return "killed", f"the record's process was killed by signal {-rc} ({signal.Signals(-rc).name})"
    return "failed", f"the record's process exited with code {rc} without a run_end event (see log.txt)"


def _result(rec, trk, config, events, outcome, started, harness_before, manifest: dict) -> dict:
    """the run's result: every key of nanopoor.result.RunResult but files, schema_version and result_sha256
    (run_record and write_result add those; tests/test_result_schema.py holds the two together)."""
    outcome["rank_failures"] = rank_failures(Path(config["run_dir"]))
    status, reason = _status(events, outcome, config)
    under_t4 = bool(config.get("as_t4")) and first(events, T4_LIMITS) is not None
    if config.get("as_t4") and status == "failed":
        reason = t4_limits.oom_reason(reason)
    end = first(events, RUN_END) or {}
    start = first(events, RUN_START) or {}
    torch_facts = start.get("torch") or {}
    smi = hardware.query_smi(outcome.get("devices")) if torch_facts.get("device", "cpu") != "cpu" else None
    hw = hardware.describe(smi, torch_facts)
    used = config["nproc"] if torch_facts.get("device", "cpu") != "cpu" else 0
    klass, hw_label = hardware.classify(hw, config["track"], used_gpus=used, device=torch_facts.get("device", "cpu"))
    train_ms, eval_ms, warm_ms = (float(end.get(k) or 0.0) for k in ("train_time_ms", "eval_time_ms", "warmup_time_ms"))
    if status == "completed":
        inside = train_ms + eval_ms + warm_ms
        if inside > outcome["wallclock_ms"]:
            status, reason = "invalid", f"clock: train + eval + warm-up ({inside:.0f} ms) exceed the outside wall-clock ({outcome['wallclock_ms']:.0f} ms)"
        elif package_files_digest(HARNESS_DIR) != harness_before:
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
        "harness_version": harness.__version__, "contract_version": CONTRACT_VERSION,
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
        "harness_sha256": harness_before, "record_files": record_files(rec.path),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(Path(rec.path)), "returncode": outcome["returncode"],
        "reproduces": config.get("reproduces"), "machine": hardware.machine_id(),
    }
