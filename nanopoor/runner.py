"""the runner: what a run needs (preflight), then a record's run folder: its config, the record's
child process under the harness (nanopoor.run_process) and its result (nanopoor.run_result).

nothing in a run folder is ever overwritten."""
from __future__ import annotations

import json
import secrets
import tempfile
from datetime import datetime, UTC
from pathlib import Path

from supervisor import CONTRACT_VERSION, sandbox
from supervisor.digest import package_files_digest
from supervisor.events import STEP, fmt_tokens
from supervisor.tracks import get_track
from nanopoor import hardware
from nanopoor.errors import UserError
from nanopoor.jsonio import dumps
from nanopoor.event_reader import read_events
from nanopoor.output import DEV_RUNS, RANKED_RUNS, check_writable, default_runs_dir
from nanopoor.records import check_frozen, load_record, refuse_data, refuse_uncovered, stage
from nanopoor.result import files_digest, write_result
from nanopoor.run_process import HARNESS_DIRS, launch_record
from nanopoor.run_result import build_result

_result = build_result  # the name tests/test_result_schema.py calls


def check_isolation(isolated: bool) -> None:
    """a run is isolated unless the user asked otherwise; where isolation cannot start, say so
    in one line before anything is written."""
    if isolated:
        why = sandbox.probe()
        if why is not None:
            raise UserError(f"isolation: {why}")


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
              allow_cpu: bool = False, verb: str = "run", isolated: bool = True) -> list[str]:
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
        needs.append(f"the {trk.dataset} dataset at {data.as_posix()}: build it with `{build_hint(data, trk.dataset)}`{net}")
    if needs:
        raise UserError(f"{verb} {rec.path.as_posix()} --scale {scale} needs " + "; and ".join(needs)
                        + (". Next: " + ", or ".join(nxt) if nxt else ""))
    check_isolation(isolated)
    if not isolated:
        notes.append("unisolated as asked: the record runs with the machine's files and processes in reach; "
                     "its result says isolated: false, and the board shows it")
    return notes


def run_seeds(record_dir: str | Path, n: int = 1, *, scale: str = "smoke", seed: int | None = None,
              data_dir=None, runs_dir: str | Path | None = None, track: str | None = None, allow_cpu: bool = False,
              isolated: bool = True, on_note=None, **kw) -> list[Path]:
    """`nanopoor run`: the preflight (its notes to on_note before anything starts), then n runs of a
    record one after another, each with its own harness-assigned seed unless seed fixes the one run's.
    runs_dir [default: runs/ for a full-scale run on a gpu, else dev-runs/]."""
    for note in preflight(record_dir, scale, track=track, data_dir=data_dir, n_runs=n, allow_cpu=allow_cpu,
                          isolated=isolated):
        if on_note is not None:
            on_note(note)
    runs_dir = runs_dir or default_runs_dir(scale, has_gpu())
    check_writable(runs_dir, "--runs DIR")   # before the first run starts, not halfway
    return [run_record(record_dir, scale=scale, seed=seed, data_dir=data_dir, out_root=runs_dir, track=track,
                       isolated=isolated, **kw) for _ in range(n)]


def run_record(record_dir: str | Path, *, scale: str = "smoke", seed: int | None = None, data_dir=None,
               out_root: str | Path = "runs", timeout_s: float | None = None, track: str | None = None,
               nproc: int = 1, quiet: bool = False, env: dict[str, str] | None = None,
               reproduces: str | None = None, as_t4: bool = False, isolated: bool = True) -> Path:
    """run one seed of a record; returns the run folder (always written, whatever the status).

    env: variables set for the record's process only (submit --parallel gives each run its gpu
    through CUDA_VISIBLE_DEVICES this way, since runs in threads share os.environ).
    reproduces: the run_id of a committed run this one re-runs (`nanopoor reproduce RUN_FOLDER`).
    as_t4: the harness holds the run to one T4's limits (harness/t4_limits.py) on any device.
    isolated: the record runs in a bubblewrap sandbox (supervisor/sandbox.py); False only when asked."""
    rec = load_record(record_dir)
    record_sha = check_frozen(rec)
    refuse_uncovered(rec.path, "run")  # before the run folder exists: a refused run leaves nothing behind
    refuse_data(rec.path, "run")
    check_isolation(isolated)
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
        "isolation": "bwrap" if isolated else "none", "entrypoint": rec.entrypoint,
    }
    harness_before = package_files_digest(HARNESS_DIRS)
    # the run executes a fresh copy of exactly the digested files, never the record folder itself
    with tempfile.TemporaryDirectory(prefix="nanopoor-record-") as tmp:
        staged = stage(rec, Path(tmp) / rec.path.name)
        config["staged_dir"] = str(staged.resolve())
        (run_dir / "config.json").write_text(dumps(config) + "\n")
        outcome = launch_record(rec, run_dir, config, timeout_s, quiet, env or {})
    events = read_events(run_dir / "events.jsonl")
    result = build_result(rec, trk, config, events, outcome, started, harness_before, manifest)
    from nanopoor.loss_plot import loss_curve

    loss_curve(events, run_dir / "loss.png", f"{rec.name} ({scale}, seed {seed}) — {result['status']}", trk.target_val_loss)
    result["files"] = files_digest(run_dir)
    write_result(run_dir, result)
    return run_dir
