"""the session a record talks to: data, clock, evaluation and the checks, in one object.

`harness.launch` builds it from the runner's config.json before the record's code runs (so the
dataset is opened before the data guard is armed); the record gets it with harness.session()."""
from __future__ import annotations

import json
import math
import os
import random
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from harness import CONTRACT_VERSION, __version__, integrity
from harness.clock import Clock, device_sync, now_ns
from harness.events import EventLog, eval_line, say
from harness.shards import open_shard
from harness.stream import BudgetExceeded, TrainStream, concat_tail, heldout_tokens_for
from harness.tracks import Track

HELDOUT_MARGIN = 0.25  # nats: val this far below never-served train tokens means the model saw val
_SESSION: "Session | None" = None


class ContractViolation(RuntimeError):
    """the record broke the contract: the run ends `invalid` with this kind and detail."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail
        integrity.add_violation(kind, detail)  # a record that swallows the exception is still invalid


def session() -> "Session":
    """the running session (created by harness.launch from NANOPOOR_CONFIG)."""
    global _SESSION
    if _SESSION is None:
        path = os.environ.get("NANOPOOR_CONFIG")
        if not path:
            raise RuntimeError("no harness session: run records through `nanopoor run RECORD`")
        _SESSION = Session(json.loads(Path(path).read_text()))
    return _SESSION


class Session:
    def __init__(self, config: dict):
        import torch

        self.config = config
        self.track = Track(**config["track"])
        self.seed = int(config["seed"])
        self.seq_len, self.batch_size = int(config["seq_len"]), int(config["batch_size"])
        self.grad_accum, self.steps = int(config["grad_accum"]), int(config["steps"])
        self.budget_tokens = int(config["budget_tokens"])
        self.args: dict = dict(config.get("args", {}))
        self.rank = int(os.environ.get("RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.is_main = self.rank == 0
        if torch.cuda.is_available():
            self.device = f"cuda:{self.local_rank}" if self.world_size > 1 else "cuda"
            torch.cuda.set_device(torch.device(self.device).index or 0)
        else:
            self.device = "cpu"
        if self.world_size > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if self.device.startswith("cuda") else "gloo")
        # the same seed on every rank: models start identical; data differs by rank slice
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)
        torch.manual_seed(self.seed)

        run_dir = Path(config["run_dir"])
        self.events = EventLog(run_dir / "events.jsonl", enabled=self.is_main)
        self._load_data(Path(config["data_dir"]))
        self.clock = Clock(device_sync(self.device))
        self.eval_time_ms = 0.0
        self.warmup_time_ms = 0.0
        self.warmup_cap_ms = float(config.get("warmup_cap_s", 900)) * 1000
        self._watched: list = []
        self._in_warmup = False
        self._warmups = 0
        self._post_warmup_digest: str | None = None
        self._started = False
        self._compiles_before = 0
        self._last_train_loss: float | None = None
        self._last_step = 0
        self._last_eval: dict | None = None
        self.summary: dict | None = None
        self.events.emit("run_start", run_id=config["run_id"], record=config["record"], scale=config["scale"],
                         seed=self.seed, contract_version=CONTRACT_VERSION, harness_version=__version__,
                         track=self.track.name, budget_tokens=self.budget_tokens, steps=self.steps,
                         seq_len=self.seq_len, batch_size=self.batch_size, grad_accum=self.grad_accum,
                         world_size=self.world_size, torch=_torch_facts(self.device), args=self.args)

    # -- data ---------------------------------------------------------------------------------
    def _load_data(self, data_dir: Path) -> None:
        manifest = json.loads((data_dir / "manifest.json").read_text())
        if manifest.get("dataset") != self.track.dataset:
            raise ValueError(f"dataset '{manifest.get('dataset')}' at {data_dir} is not track {self.track.name}'s '{self.track.dataset}'")
        self.vocab_size = int(manifest["vocab_size"])
        self.dataset_fingerprint = manifest.get("fingerprint")
        val = [open_shard(data_dir / s["file"], self.vocab_size) for s in manifest["val"]]
        train = [open_shard(data_dir / s["file"], self.vocab_size) for s in manifest["train"]]
        val_all = np.concatenate([np.asarray(v) for v in val]) if val else np.zeros(0, np.int64)
        if len(val_all) < self.track.val_tokens:
            raise ValueError(f"the val split at {data_dir} has {len(val_all):,} tokens; track {self.track.name} needs {self.track.val_tokens:,}")
        self.val_tokens_np = val_all[: self.track.val_tokens].astype(np.int64)
        self._val_device = None
        train_total = sum(len(t) for t in train)
        self.heldout_tokens = heldout_tokens_for(train_total, self.track.val_tokens)
        self.stream = TrainStream(train, self.seq_len, self.batch_size, self.budget_tokens, self.seed,
                                  self.rank, self.world_size, self.heldout_tokens)
        self._train_shards = train
        self.local_batch_size = self.stream.local_batch_size

    def next_batch(self):
        """(x, y): (local_batch_size, seq_len) int64 on the device; the first call starts the clock."""
        import torch

        if self._in_warmup:
            raise ContractViolation("warmup_data", "the record asked for train data inside the untimed warm-up; warm up on dummy data")
        if not self._started:
            self._begin_training()
        try:
            arr = self.stream.next_numpy()
        except BudgetExceeded as e:
            raise ContractViolation("budget", str(e)) from None
        t = torch.from_numpy(arr)
        if self.device.startswith("cuda"):
            t = t.pin_memory().to(self.device, non_blocking=True)
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()

    @property
    def tokens(self) -> int:
        return self.stream.tokens_served

    def _begin_training(self) -> None:
        if self._post_warmup_digest is not None and self._watched:
            if integrity.param_digest(self._watched) != self._post_warmup_digest:
                raise ContractViolation("warmup_reset", "parameters changed between the end of the warm-up and the first train batch")
        self._started = True
        self._compiles_before = compile_count()
        self.events.emit("train_start", compiles_before=self._compiles_before)
        self.clock.start()

    # -- warm-up ------------------------------------------------------------------------------
    def watch(self, *modules) -> None:
        for m in modules:
            if m is not None and all(m is not w for w in self._watched):
                self._watched.append(m)

    @contextmanager
    def warmup(self, *objs, reset: bool = True):
        """one untimed section before training (compilation on dummy data). on exit the harness
        restores every object's state_dict (models, optimizers, scalers) and checks the digest."""
        import torch

        if self._started:
            raise ContractViolation("warmup_order", "the warm-up must come before the first train batch")
        if self._warmups:
            raise ContractViolation("warmup_twice", "a record may declare one warm-up section")
        self._warmups += 1
        self.watch(*[o for o in objs if isinstance(o, torch.nn.Module)])
        stateful = [o for o in objs if hasattr(o, "state_dict") and hasattr(o, "load_state_dict")]
        before = integrity.param_digest(stateful)
        params_before = _all_parameter_sums()
        snapshot = [_to_cpu(o.state_dict()) for o in stateful] if reset else None
        self.events.emit("warmup_start")
        sync = device_sync(self.device)
        sync()
        t0 = now_ns()
        self._in_warmup = True
        try:
            yield
        finally:
            self._in_warmup = False
            sync()
            elapsed_ms = (now_ns() - t0) / 1e6
            if snapshot is not None:
                for o, sd in zip(stateful, snapshot):
                    o.load_state_dict(sd)
            after = integrity.param_digest(stateful)
            self._post_warmup_digest = integrity.param_digest(self._watched) if self._watched else None
            stray = _changed_parameters(params_before, stateful)
            capped = elapsed_ms > self.warmup_cap_ms
            self.warmup_time_ms = min(elapsed_ms, self.warmup_cap_ms)
            if capped:  # time past the cap is training time
                self.clock._elapsed_ns += int((elapsed_ms - self.warmup_cap_ms) * 1e6)
            self.events.emit("warmup_end", warmup_time_ms=elapsed_ms, capped=capped, restored=reset)
        if after != before:
            raise ContractViolation("warmup_reset", "the warm-up changed the model or optimizer state and did not reset it")
        if stray:
            raise ContractViolation("warmup_reset", f"{stray} parameter tensors not handed to h.warmup() changed during the warm-up")

    # -- steps and evaluation -----------------------------------------------------------------
    def log_step(self, step: int, train_loss: float) -> None:
        loss = float(train_loss)
        self._last_train_loss, self._last_step = loss, int(step)
        self.events.emit("step", step=int(step), tokens=self.tokens, train_loss=loss, train_time_ms=self.clock.elapsed_ms())
        if not math.isfinite(loss):
            raise ContractViolation("nan", f"train loss is {loss} at step {step}")

    def evaluate(self, forward, step: int | None = None, val_tokens: int | None = None) -> float:
        """val loss of forward over the canonical val set (or its first val_tokens: progress only).
        the train clock pauses; the evaluated weights and grads must come out unchanged."""
        import torch

        was_running = self.clock.running
        self.clock.stop()
        if isinstance(forward, torch.nn.Module):
            self.watch(forward)
        t0 = now_ns()
        before = integrity.param_digest(self._watched, with_grads=True)
        modes = [(m, m.training) for m in self._watched if hasattr(m, "train")]
        for m, _ in modes:
            m.eval()
        try:
            val = self._val_on_device()
            if val_tokens is not None:
                val = val[: int(val_tokens)]
            from harness.evaluate import val_loss

            loss, n = val_loss(forward, val, int(self.args.get("eval_seq_len", self.seq_len)),
                               int(self.args.get("eval_batch_size", self.local_batch_size)),
                               self.vocab_size, self.rank, self.world_size)
        finally:
            for m, mode in modes:
                m.train(mode)
        if integrity.param_digest(self._watched, with_grads=True) != before:
            raise ContractViolation("eval_training", "the model's parameters or gradients changed during evaluation (training work inside the eval pause)")
        ms = device_ms_since(t0, self.device)
        self.eval_time_ms += ms
        step = self._last_step if step is None else int(step)
        full = val_tokens is None or int(val_tokens) >= self.track.val_tokens
        self._last_eval = {"step": step, "val_loss": loss, "full": full, "tokens": self.tokens}
        self.events.emit("eval", step=step, tokens=self.tokens, train_time_ms=self.clock.elapsed_ms(), val_loss=loss,
                         val_tokens=n, full=full, eval_time_ms=ms)
        say(eval_line(step, self.steps, self._last_train_loss, loss, self.clock.elapsed_ms(), self.tokens, full), self.is_main)
        if not math.isfinite(loss):
            raise ContractViolation("nan", f"val loss is {loss} at step {step}")
        if was_running:
            self.clock.start()
        return loss

    def _val_on_device(self):
        import torch

        if self._val_device is None:
            self._val_device = torch.from_numpy(self.val_tokens_np).to(self.device)
        return self._val_device

    def finish(self, forward) -> dict:
        """stop the clock, make sure the last eval is full, run the causality and held-out checks."""
        import torch

        self.clock.stop()
        if self._last_eval is None or not self._last_eval["full"] or self._last_eval["step"] != self._last_step:
            self.evaluate(forward, self._last_step)
        val = self._last_eval["val_loss"]
        checks_t0 = now_ns()
        T = int(self.args.get("eval_seq_len", self.seq_len))
        window = self._val_on_device()[: 2 * T].view(2, T)
        from harness.causality import check_causality

        modes = [(m, m.training) for m in self._watched if hasattr(m, "train")]
        for m, _ in modes:
            m.eval()
        try:
            causal = check_causality(forward, window, self.vocab_size, self.seed)
            heldout = self._heldout_check(forward, val)
            dtypes = scan_dtypes(forward, window[:1], self._watched)
        finally:
            for m, mode in modes:
                m.train(mode)
        self.events.emit("causality", **causal)
        self.events.emit("heldout", **heldout)
        peak = torch.cuda.max_memory_allocated(self.device) if self.device.startswith("cuda") else None
        self.summary = {
            "train_time_ms": self.clock.elapsed_ms(), "eval_time_ms": self.eval_time_ms,
            "warmup_time_ms": self.warmup_time_ms, "checks_time_ms": (now_ns() - checks_t0) / 1e6,
            "tokens": self.tokens, "val_loss": val, "val_loss_full": True, "steps": self._last_step,
            "causal": causal["passed"], "max_leak": causal["max_leak"], "heldout_gap": heldout["gap"],
            "heldout_passed": heldout["passed"], "compiles_in_timed": compile_count() - self._compiles_before,
            "peak_memory_bytes": peak, "dtypes": sorted(dtypes), "epochs": self.stream.epoch,
            "dataset_fingerprint": self.dataset_fingerprint,
        }
        return self.summary

    def _heldout_check(self, forward, val: float) -> dict:
        from harness.evaluate import val_loss

        if self.heldout_tokens < 2 * self.seq_len:
            return {"heldout_loss": None, "val_loss": val, "gap": None, "tokens": 0, "passed": True}
        import torch

        tail = torch.from_numpy(concat_tail(self._train_shards, self.heldout_tokens)).to(self.device)
        loss, n = val_loss(forward, tail, int(self.args.get("eval_seq_len", self.seq_len)),
                           int(self.args.get("eval_batch_size", self.local_batch_size)),
                           self.vocab_size, self.rank, self.world_size)
        gap = loss - val
        return {"heldout_loss": loss, "val_loss": val, "gap": gap, "tokens": n, "margin": HELDOUT_MARGIN,
                "passed": bool(math.isfinite(gap) and gap <= HELDOUT_MARGIN)}


# -- small helpers ------------------------------------------------------------------------------
def device_ms_since(t0_ns: int, device: str) -> float:
    device_sync(device)()
    return (now_ns() - t0_ns) / 1e6


def compile_count() -> int:
    """graphs torch.compile has produced so far in this process (torch's own counter)."""
    import sys

    utils = sys.modules.get("torch._dynamo.utils")
    return int(utils.counters["stats"].get("unique_graphs", 0)) if utils is not None else 0


def _to_cpu(obj):
    import copy

    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def _all_parameter_sums() -> dict[int, float]:
    """a sum per live nn.Parameter in the process, to catch a shadow model trained in warm-up."""
    import gc
    import warnings

    import torch

    out = {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance() on every object trips deprecated aliases
        for o in gc.get_objects():
            if isinstance(o, torch.nn.Parameter) and o.numel():
                out[id(o)] = o.detach().double().sum().item()
    return out


def _changed_parameters(before: dict[int, float], restored) -> int:
    import gc

    import torch

    import warnings

    handed = {id(t) for o in restored for t in (o.state_dict(keep_vars=True).values() if isinstance(o, torch.nn.Module) else [])}
    changed = 0
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for o in gc.get_objects():
            if isinstance(o, torch.nn.Parameter) and id(o) in before and id(o) not in handed:
                if o.detach().double().sum().item() != before[id(o)]:
                    changed += 1
    return changed


def scan_dtypes(forward, x, modules) -> set[str]:
    """floating dtypes the model computes in: one eager forward under a dispatch mode, plus its
    parameters and buffers. bf16 or fp8 anywhere means the record would not run as-is on a T4."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    seen: set[str] = set()
    for m in modules:
        for t in m.state_dict().values():
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                seen.add(str(t.dtype).replace("torch.", ""))

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    seen.add(str(t.dtype).replace("torch.", ""))
            return out

    try:
        with torch.no_grad(), torch.compiler.set_stance("force_eager"), Record():
            forward(x)
    except Exception as e:  # a forward that refuses the mode still has its parameters scanned
        seen.add(f"unknown ({type(e).__name__})")
    return seen


def _torch_facts(device: str) -> dict:
    import torch

    facts = {"version": torch.__version__, "cuda": torch.version.cuda, "device": device}
    if device.startswith("cuda"):
        idx = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(idx)
        facts.update(device_name=props.name, capability=f"{props.major}.{props.minor}",
                     memory_bytes=props.total_memory, device_count=torch.cuda.device_count())
    return facts
