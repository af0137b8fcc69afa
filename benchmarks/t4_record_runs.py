"""one training run of records/dense_muon_t4_v5 outside the harness, served and scored as the harness would.

what the harness does and this module repeats, without importing harness/:
- the train batches: supervisor.stream.TrainStream over the train shards with the harness's
  held-out tail, so a seed gives the same windows in the same order as `nanopoor run --seed`;
- the val loss: float32 cross-entropy over logits[..., :vocab] of the non-overlapping windows of
  the first val_tokens of the val split (supervisor.evaluate's window_plan, cut_windows and
  cross_entropy_sum): the number the harness's claim reports;
- the T4 limits of `--as-t4`, set here as torch flags: TF32 off, flash and cuDNN attention off
  (the memory-efficient and math kernels stay), fp16 autocast with a GradScaler, no bf16; the
  15 GiB memory cap is set by cap_memory() (the sweep sets it for the compiled runs only: its
  eager runs hold float32 copies of the logits that a compiled step never makes).

what the record does and this module reuses from its own files: the model (model.py), the
parameter groups, the schedule and the fp16 optimizer step (optim.py), and the Hyperparameters
defaults (read from train.py's source, which cannot be imported outside a harness session).
a run is either eager (the sweep's loss-per-token runs: no compile per variant) or timed (the
record's compiled path: warm-up restored, the loss read back a step late, the weights handed
over to a file in host memory at the end)."""
from __future__ import annotations

import ast
import copy
import importlib.util
import json
import math
import os
import sys
import tempfile
import time
import tomllib
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "records" / "dense_muon_t4_v5"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from supervisor.evaluate import cross_entropy_sum, cut_windows, window_plan  # noqa: E402
from supervisor.shards import open_shard  # noqa: E402
from supervisor.stream import TrainStream, heldout_tokens_for, read_range  # noqa: E402

T4_MEMORY_BYTES = 15 * 2**30


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


rmodel = _load("t4_record_model", RECORD / "model.py")
roptim = _load("t4_record_optim", RECORD / "optim.py")


# -- the record's settings ---------------------------------------------------------------------
def record_defaults() -> dict:
    """train.py's Hyperparameters defaults, read from its source (train.py starts a harness session
    when imported): the class is the one statement of the file that is executed."""
    tree = ast.parse((RECORD / "train.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Hyperparameters")
    ns: dict = {}
    exec(compile(ast.Module([ast.parse("from dataclasses import dataclass").body[0], cls], type_ignores=[]),
                 str(RECORD / "train.py"), "exec"), ns)
    hp = ns["Hyperparameters"]()
    return {f.name: getattr(hp, f.name) for f in fields(hp)}


def record_scale(scale: str = "full") -> dict:
    """record.toml's scale: seq_len, batch_size (rows per micro-batch), grad_accum, steps, args."""
    toml = tomllib.loads((RECORD / "record.toml").read_text())
    return dict(toml["scales"][scale])


# -- the T4 limits -------------------------------------------------------------------------------
def set_t4_flags() -> dict:
    """the torch switches `--as-t4` sets (harness/t4_limits.py), set here; returns them read back."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_cudnn_sdp(False)
    return {"tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "flash_sdp": torch.backends.cuda.flash_sdp_enabled(), "cudnn_sdp": torch.backends.cuda.cudnn_sdp_enabled(),
            "mem_efficient_sdp": torch.backends.cuda.mem_efficient_sdp_enabled(), "autocast_dtype": "float16"}


def cap_memory(device: str) -> float | None:
    """the 15 GiB a T4 has: the caching allocator raises out-of-memory past it. returns the fraction."""
    if not device.startswith("cuda"):
        return None
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    fraction = min(1.0, T4_MEMORY_BYTES / total)
    torch.cuda.set_per_process_memory_fraction(fraction)
    return fraction


# -- data ------------------------------------------------------------------------------------
class Data:
    """the train windows in the harness's order (per seed) and the val windows, on the device."""

    def __init__(self, data_dir: Path, seq_len: int, val_tokens: int, device: str, eval_batch: int = 16,
                 vocab_cap: int | None = None):
        manifest = json.loads((data_dir / "manifest.json").read_text())
        self.vocab_size = int(manifest["vocab_size"])
        self.fingerprint = manifest.get("fingerprint")
        self.shards = [open_shard(data_dir / s["file"], self.vocab_size) for s in manifest["train"]]
        val_shards = [open_shard(data_dir / s["file"], self.vocab_size) for s in manifest["val"]]
        # a dry run folds ids into a small vocabulary (id % vocab_cap): 100k-row tables are most of a cpu's time
        self.vocab_cap = vocab_cap
        if vocab_cap:
            self.vocab_size = min(self.vocab_size, vocab_cap)
        self.train_tokens = int(sum(len(s) for s in self.shards))
        self.heldout = heldout_tokens_for(self.train_tokens, val_tokens)
        self.seq_len, self.device = seq_len, device
        val = self._fold(torch.from_numpy(read_range(val_shards, 0, val_tokens).astype(np.int64))).to(device)
        self.val_batches = [cut_windows(val, ids, seq_len) for ids in window_plan(val.numel(), seq_len, eval_batch)]
        self._cache: dict[int, torch.Tensor] = {}

    def _fold(self, t: torch.Tensor) -> torch.Tensor:
        return t % self.vocab_cap if self.vocab_cap else t

    def windows(self, seed: int, n: int) -> torch.Tensor:
        """(n, seq_len + 1) int64: the first n windows `nanopoor run --seed SEED` serves, in order
        (the stream permutes windows, so any batch size serves them in this order)."""
        have = self._cache.get(seed)
        if have is None or have.size(0) < n:
            stream = TrainStream(self.shards, self.seq_len, 1, n * self.seq_len, seed, heldout_tokens=self.heldout)
            rows = np.concatenate([stream.next_numpy() for _ in range(n)])
            self._cache[seed] = have = self._fold(torch.from_numpy(rows.astype(np.int64))).to(self.device)
        return have[:n]


class SyntheticData(Data):
    """a dry run without a dataset: phrases of random ids repeated, so a few steps learn something."""

    def __init__(self, seq_len: int, val_tokens: int, device: str, eval_batch: int = 4, vocab_size: int = 512):
        self.vocab_size, self.fingerprint, self.seq_len, self.device = vocab_size, "synthetic", seq_len, device
        self.vocab_cap = None
        rng = np.random.default_rng(0)
        phrases = [rng.integers(0, vocab_size, size=rng.integers(3, 9)) for _ in range(50)]
        tokens = np.concatenate([phrases[i] for i in rng.integers(0, 50, size=40_000)])
        self.shards = [tokens[: len(tokens) - val_tokens - 1]]
        self.train_tokens, self.heldout = len(self.shards[0]), 0
        val = torch.from_numpy(tokens[-val_tokens:].astype(np.int64)).to(device)
        self.val_batches = [cut_windows(val, ids, seq_len) for ids in window_plan(val.numel(), seq_len, eval_batch)]
        self._cache = {}


# -- the model, its optimizers and its evaluation -------------------------------------------------
def build_model(hp: dict, vocab_size: int, seq_len: int, device: str, seed: int):
    """the record's GPT, initialised as the record does it: torch.manual_seed(seed) (the harness
    seeds every run), then built on the device."""
    names = {f.name for f in fields(rmodel.GPTConfig)}
    cfg = rmodel.GPTConfig(vocab_size=math.ceil(vocab_size / 64) * 64, real_vocab_size=vocab_size, max_seq_len=seq_len,
                           **{k: v for k, v in hp.items() if k in names})
    torch.manual_seed(seed)
    with torch.device(device):
        return rmodel.GPT(cfg)


def amp(device: str):
    return torch.autocast("cuda", dtype=torch.float16) if device.startswith("cuda") else torch.autocast("cpu", enabled=False)


def eval_net(model, hp: dict, device: str):
    """the model the record hands to the harness: an fp16 copy on cuda (handover_dtype), itself on the cpu."""
    dtype = getattr(torch, hp["handover_dtype"]) if device.startswith("cuda") else torch.float32
    return model.eval() if dtype == torch.float32 else rmodel.inference_copy(model, dtype)


@torch.no_grad()
def val_loss(net, data: Data, device: str) -> tuple[float, int]:
    """the harness's number: summed float32 cross-entropy over every window's positions, / positions."""
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for batch in data.val_batches:  # (B, T + 1)
        with amp(device):
            logits = net(batch[:, :-1])  # (B, T, V_padded)
        total += cross_entropy_sum(logits, batch[:, 1:], data.vocab_size)
        count += batch[:, 1:].numel()
    return total.item() / count, count


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Trainer:
    """a model, its two optimizers and the loss scaler, stepped as train.py steps them."""

    def __init__(self, hp: dict, data: Data, seq_len: int, device: str, seed: int):
        self.hp, self.ns, self.device, self.on_cuda = hp, SimpleNamespace(**hp), device, device.startswith("cuda")
        self.model = build_model(hp, data.vocab_size, seq_len, device, seed)
        self.adamw, self.muon = roptim.build_optimizers(self.model, self.ns, self.on_cuda)
        self.optimizers = [self.adamw, self.muon]
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.on_cuda)
        self.forward = self.model
        self.skipped = torch.zeros((), device=device)

    def step(self, step: int, steps: int, micro_batches) -> torch.Tensor:
        """one optimizer step over micro-batches of (B, T + 1) windows; the 0-d mean loss, not read back."""
        roptim.set_schedule(self.model, self.adamw, self.muon, step, steps, self.ns)
        loss_sum = torch.zeros((), device=self.device)
        for batch in micro_batches:
            x, y = batch[:, :-1].contiguous(), batch[:, 1:].contiguous()  # as h.next_batch() returns them
            with amp(self.device):
                loss = self.forward(x, y)
            self.scaler.scale(loss / len(micro_batches)).backward()
            loss_sum += loss.detach()
        self.skipped += roptim.optimizer_step(self.model, self.optimizers, self.scaler, self.on_cuda)
        return loss_sum / len(micro_batches)


def micro_batches(windows: torch.Tensor, step: int, rows: int, accum: int) -> list[torch.Tensor]:
    first = (step - 1) * rows * accum
    return [windows[first + m * rows: first + (m + 1) * rows] for m in range(accum)]


# -- an eager run: loss per token ---------------------------------------------------------------
_LOSS = {"eager": rmodel.lm_loss}


def compiled_loss():
    """the record's loss tail (bias, soft-cap, float32 cross-entropy over 100k columns), compiled once
    and shared by every eager run: eagerly it moves ~130 GB a 16-row micro-batch (float32 copies of
    the logits), more than the model's matmuls take. one graph per shape, bias and cap."""
    if "compiled" not in _LOSS:
        _LOSS["compiled"] = torch.compile(_LOSS["eager"], dynamic=False)
    return _LOSS["compiled"]


def check_compiled_loss(device: str) -> str:
    """compile the shared loss on a small input, forward and backward; on failure the eager runs keep
    the eager loss (slower, the same numbers) instead of every run failing. returns what happened."""
    try:
        z = torch.randn(2, 8, 128, device=device, dtype=torch.float16, requires_grad=True)
        bias = torch.zeros(128, device=device, requires_grad=True)
        loss = compiled_loss()(z, bias, 15.0, torch.randint(0, 120, (2, 8), device=device), 120)
        loss.backward()
        return "compiled" if torch.isfinite(loss).item() else "compiled (non-finite on the check)"
    except Exception as e:  # no triton, an inductor error: eager it is
        _LOSS["compiled"] = _LOSS["eager"]
        return f"eager ({type(e).__name__}: {str(e)[:200]})"


def eager_run(hp: dict, rows: int, accum: int, steps: int, seed: int, data: Data, seq_len: int, device: str,
              also_fp32: bool = False) -> dict:
    """train `steps` optimizer steps of rows × accum windows, then the val loss of the handed-over model.
    the model is not compiled (a graph per variant would cost more than the run); on cuda its loss is."""
    t0 = time.perf_counter()
    tr = Trainer(hp, data, seq_len, device, seed)
    windows = data.windows(seed, rows * accum * steps)
    sync(device)
    t_train = time.perf_counter()
    rmodel.lm_loss = compiled_loss() if device.startswith("cuda") else _LOSS["eager"]  # GPT.forward looks it up by name
    try:
        losses = torch.stack([tr.step(s, steps, micro_batches(windows, s, rows, accum)) for s in range(1, steps + 1)])
    finally:
        rmodel.lm_loss = _LOSS["eager"]
    sync(device)
    train_s = time.perf_counter() - t_train
    loss, n = val_loss(eval_net(tr.model, hp, device), data, device)
    out = {"val_loss": loss, "val_tokens": n, "train_losses": [round(v, 4) for v in losses.tolist()],
           "skipped_steps": int(tr.skipped.item()), "eager_train_s": train_s, "eager_step_ms": 1e3 * train_s / steps}
    if also_fp32 and device.startswith("cuda"):
        out["val_loss_fp32_weights"] = val_loss(tr.model.eval(), data, device)[0]
    out["wall_s"] = time.perf_counter() - t0
    return out


# -- a timed run: the record's compiled path --------------------------------------------------------
def handover(net, folder: Path) -> dict:
    """every tensor the evaluation forward reads (parameters and buffers) copied to the host and
    written to one file in host memory: what harness 0.4's handover does on the train clock."""
    t0 = time.perf_counter()
    seen, tensors = set(), {}
    for name, t in [*net.named_parameters(), *net.named_buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            tensors[name] = t.detach()
    host = {k: v.to("cpu") for k, v in tensors.items()}  # a synchronous copy per tensor
    t1 = time.perf_counter()
    path = folder / f"handover-{os.getpid()}.pt"
    torch.save(host, path)
    t2 = time.perf_counter()
    size = sum(v.numel() * v.element_size() for v in host.values())
    path.unlink()
    return {"bytes": size, "tensors": len(host), "to_host_ms": 1e3 * (t1 - t0), "write_ms": 1e3 * (t2 - t1),
            "total_ms": 1e3 * (t2 - t0), "ms_per_gb": 1e3 * (t2 - t0) / (size / 1e9), "file_dir": str(folder)}


def handover_dir() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


class TimedTrainer(Trainer):
    """Trainer with the record's compiled forward and its untimed warm-up (state restored after)."""

    def __init__(self, hp: dict, data: Data, seq_len: int, device: str, seed: int, rows: int, compile_model: bool):
        super().__init__(hp, data, seq_len, device, seed)
        t0 = time.perf_counter()
        self.forward = torch.compile(self.model, dynamic=False) if compile_model else self.model
        saved = (copy.deepcopy(self.model.state_dict()), [copy.deepcopy(o.state_dict()) for o in self.optimizers],
                 copy.deepcopy(self.scaler.state_dict()))
        gen = torch.Generator(device=device).manual_seed(0)
        dummy = torch.randint(0, data.vocab_size, (2, rows, seq_len + 1), device=device, generator=gen)
        for _ in range(2):  # as train.py: two forward + backward passes and one optimizer step
            with amp(device):
                loss = self.forward(dummy[0, :, :-1].contiguous(), dummy[1, :, 1:].contiguous())
            self.scaler.scale(loss).backward()
        roptim.optimizer_step(self.model, self.optimizers, self.scaler, self.on_cuda)
        self.restore(saved)
        sync(device)
        self.warmup_s = time.perf_counter() - t0

    def restore(self, saved) -> None:
        self.model.load_state_dict(saved[0])
        for opt, state in zip(self.optimizers, saved[1]):
            opt.load_state_dict(state)
        self.scaler.load_state_dict(saved[2])
        self.skipped.zero_()

    def reseed(self, hp: dict, data: Data, seq_len: int, seed: int) -> None:
        """another seed on the same compiled graph: fresh weights from that seed, fresh optimizer state."""
        fresh = build_model(hp, data.vocab_size, seq_len, self.device, seed)
        self.model.load_state_dict(fresh.state_dict())
        del fresh
        for opt in self.optimizers:
            opt.state.clear()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.on_cuda)
        self.skipped.zero_()


def timed_run(tr: TimedTrainer, rows: int, accum: int, steps: int, seed: int, data: Data, device: str) -> dict:
    """the record's loop on the compiled graph: clock from the first step to the end of the handover."""
    on_cuda = device.startswith("cuda")
    windows = data.windows(seed, rows * accum * steps)
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
        marks = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
    sync(device)
    t0 = time.perf_counter()
    pending, losses = None, []
    for s in range(1, steps + 1):
        if on_cuda:
            marks[s - 1].record()
        loss = tr.step(s, steps, micro_batches(windows, s, rows, accum))
        if pending is not None:
            losses.append(pending.item())  # the step before, as train.py reads it
        pending = loss
    if on_cuda:
        marks[steps].record()
    losses.append(pending.item())
    t_train = time.perf_counter()
    net = eval_net(tr.model, tr.hp, device)
    moved = handover(net, handover_dir())
    t_end = time.perf_counter()
    out = {"train_s": t_train - t0, "handover": moved, "train_clock_s": t_end - t0, "skipped_steps": int(tr.skipped.item()),
           "train_losses": [round(v, 4) for v in losses]}
    if on_cuda:
        step_ms = [marks[i].elapsed_time(marks[i + 1]) for i in range(steps)]
        out["step_ms"] = [round(v, 2) for v in step_ms]
        out["step_ms_median_after_3"] = float(np.median(step_ms[3:])) if steps > 4 else float(np.median(step_ms))
        out["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        torch.cuda.reset_peak_memory_stats()
    out["val_loss"], out["val_tokens"] = val_loss(net, data, device)
    if on_cuda:
        out["eval_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del net
    return out
