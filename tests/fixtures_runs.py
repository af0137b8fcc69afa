"""synthetic records and run folders for the leaderboard, verify, stats and submit tests.

a run folder is written the way the runner writes one: config.json, events.jsonl, log.txt and
loss.png first, then result.json with the sha256 of each and a digest of itself."""
from __future__ import annotations

import json
from pathlib import Path

from nanopoor.hardware import classify
from nanopoor.records import compute_digest, freeze, load_record
from nanopoor.result import files_digest, write_result

T4 = {"name": "Tesla T4", "memory_bytes": 15 * 2**30, "driver": "535.104.05", "capability": "7.5"}
H100 = {"name": "NVIDIA H100 80GB HBM3", "memory_bytes": 80 * 2**30, "driver": "550.54.15", "capability": "9.0"}
TRACK_DICTS = {
    "fineweb-edu": {"official_gpu": "Tesla T4", "official_gpu_count": 1, "official_capability": "7.5"},
    "demo": {"official_gpu": "", "official_gpu_count": 0, "official_capability": ""},
}
FULL = {"seq_len": 1024, "batch_size": 8, "grad_accum": 4, "steps": 160}   # 5,242,880 tokens
SMOKE = {"seq_len": 64, "batch_size": 4, "grad_accum": 1, "steps": 8}


def claim_toml(**c) -> str:
    lines = ["", "[[claims]]"]
    lines += [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in c.items()]
    return "\n".join(lines) + "\n"


def make_record(records_dir: Path, name: str, *, title: str | None = None, author: str = "tester",
                track: str = "fineweb-edu", seeds: int = 3, claims: list[dict] = (), frozen: bool = True) -> Path:
    """a minimal valid record folder (record.toml + train.py), frozen unless told otherwise."""
    d = Path(records_dir) / name
    d.mkdir(parents=True)
    (d / "train.py").write_text(f"# record {name}: never run by these tests\nimport harness\n")
    full = "\n".join(f"{k} = {v}" for k, v in FULL.items())
    smoke = "\n".join(f"{k} = {v}" for k, v in SMOKE.items())
    text = (f'name = "{name}"\ntitle = "{title or name + " title"}"\nauthor = "{author}"\n'
            f'date = "2025-02-03"\ntrack = "{track}"\nentrypoint = "train.py"\nseeds = {seeds}\n\n'
            f"[scales.full]\n{full}\nargs = {{ lr = 0.003 }}\n\n"
            f'[scales.smoke]\ntrack = "demo"\n{smoke}\nargs = {{ n_layer = 2 }}\n')
    text += "".join(claim_toml(**c) for c in claims)
    (d / "record.toml").write_text(text)
    if frozen:
        freeze(d)
    return d


PAUSE_MS = 10.0   # each progress eval's untimed pause, and the claim's evaluation


def timeline(run_id: str, seed: int, shape: dict, train_time_ms: float, evals, val_loss, tokens: int, status: str,
             contract3: bool = False, t0: float = 1000.0) -> list[dict]:
    """the event log of a run, with stamps that agree with its clock: the train clock runs evenly
    from train_start, a step event at every eval and at the last step, each eval at its token
    count's step, then the claim's evaluation. as harness 0.1 wrote it, each eval is an untimed
    pause and the clock stops before the claim's evaluation; as contract 3 writes it (harness 0.4),
    evals run on the clock and the handover of the weights stops it."""
    per_step = shape["seq_len"] * shape["batch_size"] * shape["grad_accum"]
    steps = shape["steps"]
    at_step = {min(steps, max(1, t // per_step)): (t, v) for t, v in evals}
    events = [{"type": "run_start", "time": 1.0, "run_id": run_id, "seed": seed},
              {"type": "train_start", "time": t0}]
    paused = 0.0
    for step in sorted(set(at_step) | {steps}):
        ms = train_time_ms * step / steps
        events.append({"type": "step", "time": t0 + (ms + paused) / 1000, "step": step, "tokens": step * per_step,
                       "train_loss": 4.0, "train_time_ms": ms})
        if step in at_step:
            paused += 0.0 if contract3 else PAUSE_MS
            t, v = at_step[step]
            events.append({"type": "eval", "time": t0 + (ms + paused) / 1000, "step": step, "tokens": t, "train_time_ms": ms,
                           "val_loss": v, "val_tokens": 1024, "full": True, "eval_time_ms": PAUSE_MS,
                           **({"split": "progress", "untimed": False} if contract3 else {})})
    stop = t0 + (train_time_ms + paused) / 1000
    if contract3 and status == "completed":
        events.append({"type": "handover", "time": stop, "train_time_ms": train_time_ms, "tokens": tokens})
    end = stop + PAUSE_MS / 1000
    if status == "completed":
        events.append({"type": "eval", "time": end, "step": steps, "tokens": tokens, "train_time_ms": train_time_ms,
                       "val_loss": val_loss, "val_tokens": 1024, "full": True, "eval_time_ms": PAUSE_MS,
                       **({"split": "val"} if contract3 else {})})
    events.append({"type": "run_end", "time": end + 1.0, "status": status, "val_loss": val_loss, "tokens": tokens,
                   "train_time_ms": train_time_ms})
    return events


def made_under_contract3(result: dict) -> bool:
    """whether a result says it was made under contract 3 (harness 0.4 on), as nanopoor.timeline reads it."""
    from nanopoor.timeline import is_contract3

    return is_contract3([], result)


def make_run(runs_dir: Path, record_dir: Path, *, seed: int, val_loss: float | None = 3.20,
             train_time_ms: float = 900_000.0, status: str = "completed", causal: bool | None = True,
             gpu: dict | None = T4, gpu_count: int = 1, scale: str = "full", track: str = "fineweb-edu",
             tokens: int | None = None, finished_at: str = "2025-03-01T10:00:00+00:00",
             fingerprint: str = "fp-fineweb-edu", evals: list[tuple[int, float]] = (),
             run_id: str | None = None, overrides: dict | None = None) -> Path:
    """one run folder as the runner writes it; `overrides` replaces result keys before hashing."""
    rec = load_record(record_dir)
    record = rec.name
    shape = FULL if scale == "full" else SMOKE
    budget = shape["seq_len"] * shape["batch_size"] * shape["grad_accum"] * shape["steps"]
    tokens = budget if tokens is None else tokens
    run_id = run_id or f"{finished_at[:10].replace('-', '')}-{record}-{scale}-s{seed}"
    d = Path(runs_dir) / run_id
    d.mkdir(parents=True)
    digest = compute_digest(record_dir)
    (d / "config.json").write_text(json.dumps({"run_id": run_id, "record": record, "record_sha256": digest,
                                               "scale": scale, "seed": seed, **shape,
                                               "budget_tokens": budget}, sort_keys=True))
    events = timeline(run_id, seed, shape, train_time_ms, evals, val_loss, tokens, status,
                      contract3=made_under_contract3({"harness_version": "0.1.0", "contract_version": 1, **(overrides or {})}))
    (d / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    # the harness's own lines: the claim's evaluation, then run_end (verify compares them to the result)
    shown = f"{val_loss:.4f}" if val_loss is not None else "nan"
    (d / "log.txt").write_text(f"seed {seed}\nstep: {shape['steps']}/{shape['steps']} train_loss: n/a val_loss: {shown} "
                               f"train_time: {train_time_ms / 1000:.1f}s tokens: {tokens}\nrun_end: {status}\n")
    (d / "loss.png").write_bytes(b"\x89PNG fake curve " + str(seed).encode())
    gpus = [dict(gpu)] * gpu_count if gpu else []
    hw = {"gpus": gpus, "gpu_count": len(gpus), "cuda": "12.4" if gpus else None, "torch": "2.13.0",
          "triton": None, "cpu": "x86_64", "os": "Linux", "python": "3.11"}
    klass, label = classify(hw, TRACK_DICTS.get(track, TRACK_DICTS["demo"]), used_gpus=gpu_count if gpus else 0)
    result = {
        "run_id": run_id, "record": record, "record_sha256": digest, "record_title": rec.title,
        "author": rec.author, "track": track, "dataset": track, "dataset_fingerprint": fingerprint,
        "harness_version": "0.1.0", "contract_version": 1, "seed": seed, "scale": scale, "hardware": hw,
        "class": klass, "hardware_label": label, "nproc": gpu_count if gpus else 1, "status": status,
        "reason": "" if status == "completed" else "synthetic", "train_time_ms": train_time_ms,
        "eval_time_ms": 20_000.0, "warmup_time_ms": 60_000.0, "wallclock_ms": train_time_ms + 100_000.0,
        "tokens": tokens, "budget_tokens": budget, "formula": " × ".join(str(v) for v in shape.values()),
        "steps": shape["steps"], "val_loss": val_loss, "val_loss_full": True, "causal": causal,
        "started_at": finished_at, "finished_at": finished_at, "git": {"commit": "0" * 40, "dirty": False},
        **(overrides or {}),
    }
    result["files"] = files_digest(d)
    write_result(d, result)
    return d


def rewrite_result(run_dir: Path, **changes) -> None:
    """edit result.json in place without updating its digest: what a tamperer would do."""
    path = Path(run_dir) / "result.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def make_submission(runs_dir: Path, record_dir: Path, losses: list[float], times_ms: list[float],
                    first_seed: int = 101, **kw) -> list[Path]:
    """n runs of one record with distinct seeds (one per loss)."""
    return [make_run(runs_dir, record_dir, seed=first_seed + i, val_loss=loss, train_time_ms=t, **kw)
            for i, (loss, t) in enumerate(zip(losses, times_ms))]
