"""gpu_bench: the numbers behind docs/benchmarks.md, measured on one gpu in one call.

    # on the gpu, from the repo root, with the docs dataset built (make data-docs):
    python benchmarks/gpu_bench.py records/baseline_adamw records/muon_3xlr records/dense_muon_t4 \
        --data data/docs --track docs --out bench.json
    # the table again from run folders already written (no training):
    python benchmarks/gpu_bench.py runs/<id> runs/<id> --skip-micro
    # the same code path on a cpu with tiny sizes (a synthetic dataset, smoke scales):
    python benchmarks/gpu_bench.py records/baseline_adamw records/dense_muon_t4 --dry-run

it measures, in order: the gpu's dense fp16 matmul peak (median of timed 8192³ products after a
warm-up); each record's run (`nanopoor run --scale full`, or a run folder given directly) read
back from result.json and events.jsonl: tokens/s, mfu against the measured peak, peak memory,
t4 fit, val loss at equal token counts, time to a common val loss; then the harness's own cost:
(a) step time fed by h.next_batch() (batches asked of the supervisor over its socket) against the
same steps on batches already on the gpu, and (b) the claim's evaluation as the scorer runs it
against its forward-pass flop floor (2·n·val_tokens / peak), and a progress eval on the record's
clock against its own forward passes. goals are checked and printed; the json holds every number.
it imports harness, supervisor and nanopoor (it is tooling)."""
from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import math
import re
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: harness and nanopoor import from the repo

GIB = 2**30
T4_MEMORY_BYTES = 15 * GIB
GOALS = {"mfu": 0.40, "speedup_vs_baseline": 2.0, "stream_overhead": 0.01, "eval_vs_floor": 1.5}
console = Console(width=None if sys.stdout.isatty() else 160)  # logs from a device keep whole rows


# -- 1. the gpu's measured dense fp16 peak ---------------------------------------------------
def measure_matmul_peak(device: str, n: int, reps: int = 10, warmup: int = 3) -> dict:
    """median flop/s of an n×n×n product (fp16 on cuda, fp32 on the cpu) over `reps` timed runs."""
    import torch

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(warmup):
        a @ b
    samples = []
    for _ in range(reps):
        samples.append(_timed_ms(device, lambda: a @ b))
    ms = statistics.median(samples)
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "median_ms": ms,
            "flops": 2 * n**3 / (ms / 1000), "samples_ms": samples}


def _timed_ms(device: str, fn) -> float:
    import torch

    if device.startswith("cuda"):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


# -- 2. runs: launch records or read run folders --------------------------------------------
def collect_runs(targets: list[str], *, scale: str, track: str | None, data: Path | None, runs_out: Path,
                 timeout_s: float | None) -> tuple[list[Path], list[dict]]:
    """a run folder per target: given folders as they are, records run now through the runner."""
    from nanopoor.runner import run_record

    from nanopoor.errors import UserError

    dirs, errors = [], []
    for t in targets:
        p = Path(t)
        if (p / "result.json").is_file():
            dirs.append(p)
        elif (p / "record.toml").is_file():
            console.print(f"[bold]running[/] {p} ({scale} scale{', track ' + track if track else ''})")
            try:  # one record that cannot start must not cost the other runs of this gpu call
                dirs.append(run_record(p, scale=scale, data_dir=data, out_root=runs_out, timeout_s=timeout_s,
                                       track=track, quiet=True))
            except UserError as e:
                console.print(f"[red]{t}: {e}[/]")
                errors.append({"target": t, "error": str(e)})
        else:
            errors.append({"target": t, "error": "neither a run folder (result.json) nor a record (record.toml)"})
            console.print(f"[red]{t}: {errors[-1]['error']}[/]")
    return dirs, errors


def matmul_params(run_dir: Path, events: list[dict], overrides: dict[str, int], record: str) -> int | None:
    """n of 6·n·tokens: an override, else a `matmul_params` event field, else the record's log line."""
    if record in overrides:
        return overrides[record]
    for e in events:
        if "matmul_params" in e:
            return int(e["matmul_params"])
    log = run_dir / "log.txt"
    if log.is_file():
        m = re.search(r"matmul_params=(\d+)", log.read_text(errors="replace"))
        if m:
            return int(m.group(1))
    return None


def eval_curve(events: list[dict]) -> list[dict]:
    """eval events sorted by tokens (progress prefixes and full evals together)."""
    evals = [e for e in events if e.get("type") == "eval" and _finite(e.get("val_loss"))]
    return sorted(evals, key=lambda e: (e["tokens"], e.get("full", False)))


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def val_at_tokens(curve: list[dict], tokens: float) -> float | None:
    """val loss at `tokens`, linear in tokens between the evals around it; None outside them."""
    for a, b in zip(curve, curve[1:]):
        if a["tokens"] <= tokens <= b["tokens"]:
            if b["tokens"] == a["tokens"]:
                return float(b["val_loss"])
            w = (tokens - a["tokens"]) / (b["tokens"] - a["tokens"])
            return float(a["val_loss"]) + w * (float(b["val_loss"]) - float(a["val_loss"]))
    if curve and curve[-1]["tokens"] == tokens:
        return float(curve[-1]["val_loss"])
    return None


def time_to_loss(curve: list[dict], target: float) -> float | None:
    """train_time_ms when val loss first reaches target, linear in loss between the two evals that
    bracket the crossing; the first eval's own time when it is already at or below (an upper bound)."""
    prev = None
    for e in curve:
        if float(e["val_loss"]) <= target:
            if prev is None or float(prev["val_loss"]) == float(e["val_loss"]):
                return float(e["train_time_ms"])
            w = (float(prev["val_loss"]) - target) / (float(prev["val_loss"]) - float(e["val_loss"]))
            return float(prev["train_time_ms"]) + w * (float(e["train_time_ms"]) - float(prev["train_time_ms"]))
        prev = e
    return None


def t4_fit(result: dict, end: dict) -> dict:
    """the runner's verdict when it gave one; else peak memory and the dtypes the harness saw."""
    if isinstance(result.get("t4_fit"), dict):
        fit = dict(result["t4_fit"])
        fit.setdefault("fits", bool(fit.get("within_15gib") and fit.get("no_bf16")))
        return fit
    peak = result.get("peak_memory_bytes")
    dtypes = end.get("dtypes") or []
    no_bf16 = not any("bfloat16" in d or "float8" in d for d in dtypes)
    within = None if peak is None else peak <= T4_MEMORY_BYTES
    return {"peak_memory_bytes": peak, "within_15gib": within, "no_bf16": no_bf16, "dtypes": dtypes,
            "fits": bool(no_bf16 and within) if within is not None else None}


def run_rows(run_dirs: list[Path], peak_flops: float, overrides: dict[str, int]) -> list[dict]:
    from nanopoor.event_reader import read_events
    from nanopoor.result import load_result

    rows = []
    for d in run_dirs:
        result = load_result(d)
        events = read_events(d / "events.jsonl")
        end = next((e for e in reversed(events) if e.get("type") == "run_end"), {})
        n = matmul_params(d, events, overrides, result["record"])
        tokens, train_ms = result.get("tokens") or 0, result.get("train_time_ms") or 0.0
        tps = tokens / (train_ms / 1000) if train_ms else None
        mfu = 6 * n * tps / peak_flops if (n and tps and peak_flops) else None
        rows.append({
            "run_dir": str(d), "record": result["record"], "status": result["status"], "scale": result.get("scale"),
            "track": result.get("track"), "hardware": result.get("hardware_label"), "tokens": tokens,
            "train_time_ms": train_ms, "tokens_per_s": tps, "matmul_params": n, "mfu": mfu,
            "peak_memory_bytes": result.get("peak_memory_bytes"), "t4_fit": t4_fit(result, end),
            "compiles_in_timed": result.get("compiles_in_timed"), "val_loss": result.get("val_loss"),
            "curve": [{k: e.get(k) for k in ("step", "tokens", "train_time_ms", "val_loss", "full")} for e in eval_curve(events)],
        })
    return rows


def compare(rows: list[dict], target: float | None, baseline: str) -> dict:
    """val loss at equal token counts and time to a common val loss (the worst final loss by default)."""
    done = [r for r in rows if r["status"] == "completed" and r["curve"]]
    if not done:
        return {"target_val_loss": target, "tokens_compared": [], "baseline": None}
    if target is None:
        target = max(float(r["val_loss"]) for r in done if r["val_loss"] is not None)
    common = min(r["curve"][-1]["tokens"] for r in done)
    checkpoints = [common // 4, common // 2, common]
    base = next((r for r in done if r["record"] == baseline), None)
    for r in rows:
        r["val_at_tokens"] = {str(t): val_at_tokens(r["curve"], t) for t in checkpoints} if r["curve"] else {}
        r["time_to_target_ms"] = time_to_loss(r["curve"], target) if r["curve"] else None
    base_ms = base["time_to_target_ms"] if base else None
    for r in rows:
        ms = r["time_to_target_ms"]
        r["speedup_vs_baseline"] = base_ms / ms if (base_ms and ms) else None
    return {"target_val_loss": target, "tokens_compared": checkpoints, "baseline": baseline if base else None}


# -- 3. the harness's own cost ----------------------------------------------------------------
def load_record_model(record: Path):
    """the GPT / GPTConfig of a record's model.py, imported under a private name."""
    spec = importlib.util.spec_from_file_location(f"_bench_model_{record.name}", record / "model.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod.GPT, mod.GPTConfig


@contextmanager
def bench_session(data: Path, track: str, seq_len: int, batch_size: int, steps: int, run_dir: Path):
    """a record's session outside a run: the client (harness.session_api) talking over a unix socket
    to the supervisor's server (supervisor.server) in this process, as rank 0 of a run does (no
    sandbox, no scorer). yields (h, feed): feed holds the val tokens the claim's scorer reads."""
    import torch

    from harness import CONTRACT_VERSION, wire
    from harness.session_api import Session
    from supervisor.events import EventLog, RunLog
    from supervisor.feed import DataFeed
    from supervisor.server import RunServer
    from supervisor.tracks import get_track

    spec = get_track(track).to_dict()
    config = {"run_id": "gpu-bench", "seed": 1234, "seq_len": seq_len, "batch_size": batch_size, "grad_accum": 1,
              "steps": steps, "budget_tokens": seq_len * batch_size * steps, "args": {}, "nproc": 1, "track": spec}
    feed = DataFeed(data, spec, seq_len, batch_size, config["budget_tokens"], config["seed"], 1, seq_len)
    (run_dir / "handover").mkdir(parents=True, exist_ok=True)
    events = EventLog(run_dir / "events.jsonl")
    server = RunServer(config, feed, events, RunLog(run_dir / "log.txt", echo=False),
                       {"handover": str(run_dir / "handover"), "record": str(run_dir)}, handover_dir=run_dir / "handover")
    server.listen(str(run_dir / "s.sock"))
    sock = wire.connect(str(run_dir / "s.sock"))
    try:
        wire.send(sock, {"op": "hello", "rank": 0, "world_size": 1, "local_rank": 0, "pid": 0,
                         "contract": CONTRACT_VERSION, "torch": {}})
        msg, _ = wire.recv(sock)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        yield Session(sock, msg["config"], 0, 1, 0, device), feed
    finally:
        sock.close()
        server.close()
        events.close()


def micro_benchmarks(step_record: Path, data: Path, track: str, peak_flops: float, *, seq_len: int, batch_size: int,
                     grad_accum: int, steps_per_block: int, blocks: int, model_overrides: dict,
                     eval_tokens: int | None, compile_model: bool) -> dict:
    GPT, GPTConfig = load_record_model(step_record)
    # a short folder: a unix socket's path is limited to ~100 bytes
    with tempfile.TemporaryDirectory(prefix="npb") as tmp:
        total_micro = (2 * blocks + 1) * steps_per_block * grad_accum + 4
        with bench_session(data, track, seq_len, batch_size, total_micro, Path(tmp)) as (h, feed):
            names = {f.name for f in fields(GPTConfig)}
            cfg_kw = {"vocab_size": math.ceil(h.vocab_size / 64) * 64, "real_vocab_size": h.vocab_size, **model_overrides}
            for key in ("block_size", "max_seq_len"):
                if key in names:
                    cfg_kw[key] = seq_len
            model = GPT(GPTConfig(**{k: v for k, v in cfg_kw.items() if k in names})).to(h.device)
            n = model.param_counts()["matmul"]
            rig = TrainRig(h, model, grad_accum, compile_model)
            stream = {"model": f"{step_record.name} ({n / 1e6:.1f}M matmul params)", "seq_len": seq_len,
                      "batch_size": batch_size, "grad_accum": grad_accum, "steps_per_block": steps_per_block,
                      "blocks": blocks, **stream_costs(rig, steps_per_block, blocks)}
            evaluation = eval_costs(rig, feed, n, peak_flops, seq_len, batch_size, eval_tokens, compile_model)
    return {"matmul_params": n, "stream": stream, "eval": evaluation}


class TrainRig:
    """a record-like train step on the bench session: amp, grad scaling, grad accumulation, one sync a step."""

    def __init__(self, h, model, grad_accum: int, compile_model: bool):
        import torch

        self.h, self.model, self.grad_accum = h, model, grad_accum
        self.on_cuda = h.device.startswith("cuda")
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=self.on_cuda)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.on_cuda)
        self.fwd = torch.compile(model) if compile_model else model
        self.sync = torch.cuda.synchronize if self.on_cuda else (lambda: None)

    def amp(self):
        import torch

        return torch.autocast("cuda", dtype=torch.float16) if self.on_cuda else torch.autocast("cpu", enabled=False)

    def train_step(self, batches, log_step=None, step=0) -> None:
        """batches: a list of (x, y), or a callable fetching the next one (as a record's loop does)."""
        import torch

        total = torch.zeros((), device=self.h.device)
        for i in range(self.grad_accum):
            x, y = batches() if callable(batches) else batches[i]
            with self.amp():
                loss = self.fwd(x, y)
            self.scaler.scale(loss / self.grad_accum).backward()
            total += loss.detach()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        value = total.item() / self.grad_accum  # the per-step sync every record makes
        if log_step is not None:
            log_step(step, value)


def stream_costs(rig: TrainRig, steps_per_block: int, blocks: int) -> dict:
    """(a) the stream's cost: batches asked of the supervisor over its socket (h.next_batch, the next
    one asked for ahead) vs the same steps on batches already on the device, both logging through
    h.log_step as every record does; the step messages' own cost: staged with vs without h.log_step.
    the variants alternate step by step (the gpu's clocks drift by a few % over a minute, more than
    the effects here), and each step is timed alone; medians of blocks × steps_per_block steps."""
    h, accum = rig.h, rig.grad_accum
    # warm-up (compile) on staged batches taken from the stream itself
    staged = [h.next_batch() for _ in range(steps_per_block * accum)]
    for _ in range(2):
        rig.train_step(staged[:accum])

    def timed_step(streamed: bool, logged: bool, s: int) -> float:
        """one optimizer step, ms: from an idle device (the previous step's .item() synced) to this one's."""
        k = s % steps_per_block  # which of the staged steps
        batches = h.next_batch if streamed else staged[k * accum:(k + 1) * accum]
        t0 = time.perf_counter()
        rig.train_step(batches, h.log_step if logged else None, s)  # streamed: fetched per micro-step, as records do
        rig.sync()
        return (time.perf_counter() - t0) * 1000

    variants = {"staged_unlogged": (False, False), "staged": (False, True), "stream": (True, True)}
    samples = {k: [] for k in variants}
    rig.sync()
    for s in range(blocks * steps_per_block):
        for k, (streamed, logged) in variants.items():
            samples[k].append(timed_step(streamed, logged, s))
    med = {k: statistics.median(v) for k, v in samples.items()}
    a, b = med["staged"], med["stream"]
    return {"staged_step_ms": a, "stream_step_ms": b, "overhead": b / a - 1, "staged_unlogged_step_ms": med["staged_unlogged"],
            "log_step_overhead": a / med["staged_unlogged"] - 1,
            "paired_overhead_median": statistics.median(y / x - 1 for x, y in zip(samples["staged"], samples["stream"])),
            **{f"{k}_samples_ms": v for k, v in samples.items()}}


def eval_costs(rig: TrainRig, feed, n: int, peak_flops: float, seq_len: int, batch_size: int, eval_tokens: int | None,
               compile_model: bool) -> dict:
    """(b) the claim's evaluation as the scorer runs it (supervisor.evaluate.claim_loss over the val
    tokens, with and without the causality probe) against the forward-pass floor at the measured
    peak; then a progress eval (h.evaluate, on the record's clock) against its own forward passes.
    eager forward at the train batch, then (compile_model) a compiled forward on 4x the batch. the
    scorer here calls the record's model directly: a run's scorer calls an exported graph."""
    import torch

    from supervisor.causality import Probe
    from supervisor.evaluate import TensorWindows, claim_loss

    h, model = rig.h, rig.model
    model.eval()
    val = torch.from_numpy(feed.eval_tokens("val").astype(np.int64)).to(h.device)
    if eval_tokens is not None:
        val = val[:eval_tokens]
    windows = val[: (val.numel() - 1) // seq_len * seq_len].view(-1, seq_len)
    val_tokens = windows.numel()
    floor_ms = 2 * n * val_tokens / peak_flops * 1000

    def timed(fn) -> float:
        rig.sync()
        t0 = time.perf_counter()
        fn()
        rig.sync()
        return (time.perf_counter() - t0) * 1000

    def eval_parts(fwd_fn, eval_batch: int) -> dict:
        def claim(probe: bool):
            return claim_loss(fwd_fn, TensorWindows(val, seq_len, eval_batch), h.vocab_size,
                              probe=Probe(h.vocab_size) if probe else None, device=h.device)

        claim(True)                                   # warm: the loss's kernels and the probe's shapes
        eval_ms = timed(lambda: claim(True))
        no_probe_ms = timed(lambda: claim(False))
        fwd_ms = _forward_only_ms(fwd_fn, windows, eval_batch, rig.sync)
        h.evaluate(fwd_fn, 0)                         # warm (the progress slice is fetched once)
        progress_ms = timed(lambda: h.evaluate(fwd_fn, 0))
        progress = h._progress_tokens()               # what the record's session holds: ≤ a tenth of the budget
        rows = (progress.numel() - 1) // h.eval_seq_len
        progress_fwd_ms = _forward_only_ms(fwd_fn, progress[: rows * h.eval_seq_len].view(rows, h.eval_seq_len),
                                           h.eval_batch_size, rig.sync)
        progress_tokens = rows * h.eval_seq_len
        return {"eval_batch_size": eval_batch, "eval_ms": eval_ms, "eval_without_probe_ms": no_probe_ms,
                "forward_only_ms": fwd_ms, "eval_vs_floor": eval_ms / floor_ms, "forward_vs_floor": fwd_ms / floor_ms,
                "harness_ms": eval_ms - fwd_ms, "progress_tokens": progress_tokens, "progress_eval_ms": progress_ms,
                "progress_forward_only_ms": progress_fwd_ms}

    def forward(x):
        with torch.no_grad(), rig.amp():
            return model(x)

    evaluation = {"val_tokens": val_tokens, "floor_ms": floor_ms, **eval_parts(forward, batch_size),
                  "fixed_costs_ms": _eval_fixed_costs(h, windows[:batch_size], forward)}
    if compile_model:
        compiled = torch.compile(model)

        def forward_compiled(x):
            with torch.no_grad(), rig.amp():
                return compiled(x)

        evaluation["compiled"] = eval_parts(forward_compiled, 4 * batch_size)
    return evaluation


def _eval_fixed_costs(h, x, forward) -> dict:
    """what the messages and the loss cost besides the forward passes, each piece timed alone (ms,
    median of 3): a step message, a progress report, and the scorer's loss over one batch."""
    import torch

    from supervisor.evaluate import ce_sum, cross_entropy_sum

    with torch.no_grad():
        logits = forward(x)
    y = x.roll(-1, dims=1)
    flat, targets = logits.flatten(0, 1), y.flatten()
    unsplit = torch.compile(ce_sum, dynamic=True, options={"split_reductions": False})
    unsplit(flat, targets, h.vocab_size)  # compile outside the timing
    sync = torch.cuda.synchronize if h.device.startswith("cuda") else (lambda: None)
    pieces = {
        "h.log_step ×100 (step messages to the supervisor)": lambda: [h.log_step(i, 1.0) for i in range(100)],
        "progress report ×100": lambda: [h.tell("progress_eval", step=i, val_loss=1.0, tokens=0, forward_ms=0.0) for i in range(100)],
        f"loss over one batch ({x.shape[0]}×{x.shape[1]})": lambda: cross_entropy_sum(logits, y, h.vocab_size),
        "the same, reduction not split": lambda: unsplit(flat, targets, h.vocab_size),
    }
    out = {}
    for name, fn in pieces.items():
        times = []
        for _ in range(3):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = statistics.median(times)
    out["objects on the heap"] = len(gc.get_objects())
    return out


def _forward_only_ms(forward, windows, batch_size: int, sync) -> float:
    import torch

    with torch.no_grad():
        sync()
        t0 = time.perf_counter()
        for i in range(0, windows.size(0), batch_size):
            forward(windows[i:i + batch_size])
        sync()
    return (time.perf_counter() - t0) * 1000


# -- 4. dry-run data, goals, output -----------------------------------------------------------
def synthetic_dataset(root: Path, val_tokens: int, train_tokens: int, vocab_size: int = 100277) -> Path:
    """a tiny 'demo' dataset of random ids (timing only: the loss means nothing)."""
    from supervisor.shards import write_shard

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    entries = {}
    for split, count in (("val", val_tokens), ("train", train_tokens)):
        name = f"{split}_000000.bin"
        write_shard(root / name, rng.integers(0, vocab_size, count), vocab_size)
        entries[split] = [{"file": name, "tokens": count, "documents": 1,
                           "sha256": hashlib.sha256((root / name).read_bytes()).hexdigest()}]
    fp = hashlib.sha256(("cl100k_base" + str(vocab_size) + entries["val"][0]["sha256"] + entries["train"][0]["sha256"]).encode())
    manifest = {"schema_version": 1, "dataset": "demo", "tokenizer": "cl100k_base", "vocab_size": vocab_size,
                "eot_id": 100257, "source": {"kind": "synthetic", "by": "benchmarks/gpu_bench.py --dry-run"},
                "val": entries["val"], "train": entries["train"], "val_tokens": val_tokens, "train_tokens": train_tokens,
                "fingerprint": fp.hexdigest(), "complete": True}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root


def check_goals(rows: list[dict], micro: dict | None, fast_record: str, rival: str) -> list[dict]:
    goals = []
    fast = next((r for r in rows if r["record"] == fast_record and r["status"] == "completed"), None)
    if fast is not None:
        goals.append(_goal(f"{fast_record} mfu >= {GOALS['mfu']:.0%}", fast["mfu"], fast["mfu"] is not None and fast["mfu"] >= GOALS["mfu"]))
        s = fast.get("speedup_vs_baseline")
        goals.append(_goal(f"{fast_record} >= {GOALS['speedup_vs_baseline']:.0f}x faster than the baseline to the common loss", s,
                           s is not None and s >= GOALS["speedup_vs_baseline"]))
        other = next((r for r in rows if r["record"] == rival and r["status"] == "completed"), None)
        if other is not None:
            a, b = fast.get("time_to_target_ms"), other.get("time_to_target_ms")
            goals.append(_goal(f"{fast_record} faster than {rival} to the common loss", (b / a) if (a and b) else None,
                               bool(a and (b is None or a < b))))
    if micro:
        o = micro["stream"]["overhead"]
        goals.append(_goal(f"harness stream overhead <= {GOALS['stream_overhead']:.0%}", o, o <= GOALS["stream_overhead"]))
        for label, part in (("eager forward", micro["eval"]), ("compiled forward", micro["eval"].get("compiled"))):
            if part:
                e = part["eval_vs_floor"]
                goals.append(_goal(f"full eval <= {GOALS['eval_vs_floor']}x its flop floor ({label}, batch {part['eval_batch_size']})",
                                   e, e <= GOALS["eval_vs_floor"]))
    return goals


def _goal(name: str, value, passed: bool) -> dict:
    return {"goal": name, "value": value, "passed": bool(passed)}


def _f(v, fmt: str, none: str = "—") -> str:
    return none if v is None else format(v, fmt)


def print_report(report: dict) -> None:
    peak = report["matmul_peak"]
    if report["dry_run"]:
        console.print("[yellow]dry run: cpu-sized smoke runs on synthetic data; the numbers test the code path, not the hardware[/]")
    console.print(f"matmul peak: {peak['flops'] / 1e12:.1f} TFLOP/s ({peak['dtype']}, {peak['n']}³, median of {len(peak['samples_ms'])}) "
                  f"on {report['device']}")
    cmp = report["compare"]
    tab = Table(title=f"runs (common val loss {_f(cmp['target_val_loss'], '.4f')}; baseline {cmp['baseline'] or '—'})")
    checkpoints = cmp["tokens_compared"]
    for col in ("record", "status", "tokens/s", "MFU", "peak GiB", "T4 fit", *[f"val@{t / 1e6:.2f}M" for t in checkpoints],
                "time to loss s", "speedup"):
        tab.add_column(col, justify="left" if col in ("record", "status", "T4 fit") else "right")
    for r in report["runs"]:
        fit = r["t4_fit"]
        fit_s = {True: "yes", False: "no", None: "n/a"}[fit.get("fits")]
        if fit.get("fits") is False:
            fit_s += " (" + ", ".join(k for k, ok in (("memory", fit.get("within_15gib")), ("bf16", fit.get("no_bf16"))) if ok is False) + ")"
        vals = [_f(r.get("val_at_tokens", {}).get(str(t)), ".4f") for t in checkpoints]
        ttl = r.get("time_to_target_ms")
        tab.add_row(r["record"], r["status"], _f(r["tokens_per_s"], ",.0f"), _f(r["mfu"], ".1%"),
                    _f(r["peak_memory_bytes"] and r["peak_memory_bytes"] / GIB, ".2f"), fit_s, *vals,
                    _f(ttl and ttl / 1000, ".1f"), _f(r.get("speedup_vs_baseline"), ".2f"))
    console.print(tab)
    micro = report.get("micro")
    for err in report.get("run_errors") or []:
        console.print(f"[red]not run: {err['target']}: {err['error']}[/]")
    if report.get("micro_error"):
        console.print(f"[red]micro-benchmarks: {report['micro_error']}[/]")
    if micro:
        s, e = micro["stream"], micro["eval"]
        console.print(f"(a) harness stream: {s['stream_step_ms']:.2f} ms/step vs {s['staged_step_ms']:.2f} ms staged on the device "
                      f"→ overhead {s['overhead']:+.2%} ({s['model']}, medians of {s['blocks'] * s['steps_per_block']} steps each, "
                      f"alternating step by step, both logging each step; h.log_step itself {s.get('log_step_overhead', float('nan')):+.2%})")
        if e.get("fixed_costs_ms"):
            console.print("    costs besides the forward: " + "; ".join(
                f"{k} {v:,}" if k == "objects on the heap" else f"{k} {v:.1f} ms"
                for k, v in e["fixed_costs_ms"].items()))
        for label, part in (("eager forward", e), ("compiled forward", e.get("compiled"))):
            if part is None or "eval_ms" not in part:
                continue
            console.print(f"(b) full eval of {e['val_tokens']:,} tokens, {label}, batch {part['eval_batch_size']}: {part['eval_ms']:.0f} ms "
                          f"({part['eval_without_probe_ms']:.0f} ms without the causality probe); model forward alone "
                          f"{part['forward_only_ms']:.0f} ms; flop floor {e['floor_ms']:.0f} ms → {part['eval_vs_floor']:.2f}× the floor "
                          f"(forward {part['forward_vs_floor']:.2f}×)")
            console.print(f"    progress eval (h.evaluate, on the record's clock) of {part['progress_tokens']:,} tokens: "
                          f"{part['progress_eval_ms']:.0f} ms; its forward passes alone {part['progress_forward_only_ms']:.0f} ms")
    gt = Table(title="goals")
    for col in ("goal", "value", "met"):
        gt.add_column(col)
    for g in report["goals"]:
        v = g["value"]
        gt.add_row(g["goal"], _f(v, ".3f") if isinstance(v, float) else str(v), "[green]yes[/]" if g["passed"] else "[red]no[/]")
    console.print(gt)


def main(
    targets: list[str] = typer.Argument(None, help="record folders (run now) or run folders (read back)"),
    data: Path = typer.Option(None, help="dataset folder for the runs and the micro-benchmarks (e.g. data/docs)"),
    track: str = typer.Option(None, help="track to run the records on (e.g. docs); default: the scale's own"),
    scale: str = typer.Option(None, help="record scale to run (default full; smoke with --dry-run)"),
    runs: Path = typer.Option(Path("bench-runs"), "--runs", metavar="DIR", help="folder that receives the new run folders"),
    out: Path = typer.Option(Path("bench.json"), help="json report"),
    target_loss: float = typer.Option(None, help="common val loss for time-to-loss (default: the worst final loss)"),
    baseline: str = typer.Option("baseline_adamw", help="record the speedups are measured against"),
    fast_record: str = typer.Option("dense_muon_t4", help="record the mfu / speed goals are checked for"),
    rival: str = typer.Option("muon_3xlr", help="record the fast record must beat to the common loss"),
    params: list[str] = typer.Option(None, help="RECORD=N: matmul params of a record whose log does not say"),
    step_record: Path = typer.Option(ROOT / "records" / "dense_muon_t4", help="model used for micro-benchmarks (a), (b)"),
    skip_micro: bool = typer.Option(False, help="only the run table (no matmul-peak-dependent micro-benchmarks)"),
    peak_n: int = typer.Option(8192, help="matmul size for the peak measurement"),
    timeout: float = typer.Option(None, help="seconds per record run before it is stopped"),
    dry_run: bool = typer.Option(False, help="cpu-sized: tiny matmul, synthetic data, smoke scales, tiny micro model"),
) -> None:
    """Measure tokens/s, MFU, memory, T4 fit, equal-token val loss, time to a common loss, and the harness's overhead."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    overrides = {}
    for p in params or []:
        name, _, value = p.partition("=")
        overrides[name] = int(float(value))
    tmp = tempfile.TemporaryDirectory()
    if dry_run:
        scale = scale or "smoke"
        track = track or "demo"
        data = data or synthetic_dataset(Path(tmp.name) / "demo", 16384 + 1025, 200_000)
        peak_n = min(peak_n, 256)
    scale = scale or "full"
    peak = measure_matmul_peak(device, peak_n)
    run_dirs, run_errors = collect_runs(targets or [], scale=scale, track=track, data=data, runs_out=runs, timeout_s=timeout)
    rows = run_rows(run_dirs, peak["flops"], overrides)
    cmp = compare(rows, target_loss, baseline)
    report = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
              "dry_run": dry_run, "matmul_peak": peak, "runs": rows, "run_errors": run_errors, "compare": cmp,
              "micro": None, "micro_error": None, "thresholds": GOALS}
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")  # the runs are kept even if what follows fails
    micro = None
    if not skip_micro and data is None:
        report["micro_error"] = "the micro-benchmarks need --data (the dataset the harness streams from)"
    elif not skip_micro:
        micro_track = track or "docs"
        try:
            micro = _micro(step_record, data, micro_track, peak["flops"], dry_run, device)
        except Exception as e:  # reported, not raised: the run table above is the expensive part
            report["micro_error"] = f"{type(e).__name__}: {e}"
    report["micro"] = micro
    report["goals"] = check_goals(rows, micro, fast_record, rival)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_report(report)
    console.print(f"wrote {out}")
    tmp.cleanup()


def _micro(step_record: Path, data: Path, track: str, peak_flops: float, dry_run: bool, device: str) -> dict:
    if dry_run:
        return micro_benchmarks(step_record, data, track, peak_flops, seq_len=64, batch_size=4, grad_accum=1,
                                steps_per_block=1, blocks=2, model_overrides={"n_layer": 1, "n_head": 2, "n_embd": 16},
                                eval_tokens=1025, compile_model=False)
    return micro_benchmarks(step_record, data, track, peak_flops, seq_len=1024, batch_size=8, grad_accum=4,
                            steps_per_block=10, blocks=6, model_overrides={}, eval_tokens=None,
                            compile_model=device == "cuda")


if __name__ == "__main__":
    typer.run(main)
