"""the session a record talks to: data, clock, evaluation and the checks, in one object.

`harness.launch` builds it from the runner's config.json before the record's code runs (so the
dataset is opened before the data guard is armed); the record gets it with harness.session().
the train split lives in a separate data process (harness.dataserver): this process only
ever holds the batches it was served, the val split and, at finish, the held-out tail."""
from __future__ import annotations

import json
import math
import os
import random
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from harness import CONTRACT_VERSION, __version__, integrity
from harness.causality import Probe
from harness.clock import Clock, check_ns, device_sync, now_ns
from harness.dataserver import DataServerError, StreamClient
from harness.evaluate import val_loss
from harness.device_facts import compile_count, device_ms_since, scan_dtypes, torch_facts
from harness.events import EventLog, eval_line, say
from harness.shards import open_shard
from harness.tracks import Track
from harness.watch import (all_parameter_sums, changed_parameters, changed_since, live_parameters, optimizer_digests,
                           stepped_optimizers, to_cpu)

HELDOUT_MARGIN = 0.25  # nats: val this far below never-served train tokens means the model saw val
SPAN_TOLERANCE = 0.01  # train time + eval pauses must match the monotonic span within 1% ...
SPAN_SLACK_MS = 50.0   # ... plus this (scheduling between two clock reads)
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
        self._compiles_paused = 0      # compiles during eval pauses (untimed)
        self._compiles_timed = None    # fixed when the clock stops for good
        self._last_train_loss: float | None = None
        self._last_step = 0
        self._last_eval: dict | None = None
        self._in_eval = False
        self._eval_graph = False
        self._span_t0: int | None = None     # monotonic time of the clock's first start
        self._pause_ns_in_span = 0           # eval pauses inside the training span
        self._warmup_excess_ns = 0           # warm-up time past the cap, charged to the clock
        self._causality: Probe | None = None  # the probe of the last full evaluation
        self.summary: dict | None = None
        integrity.set_emitter(self.events.emit)
        self.events.emit("run_start", run_id=config["run_id"], record=config["record"], scale=config["scale"],
                         seed=self.seed, contract_version=CONTRACT_VERSION, harness_version=__version__,
                         track=self.track.name, budget_tokens=self.budget_tokens, steps=self.steps,
                         seq_len=self.seq_len, batch_size=self.batch_size, grad_accum=self.grad_accum,
                         world_size=self.world_size, torch=torch_facts(self.device), args=self.args)

    # -- data ---------------------------------------------------------------------------------
    def _load_data(self, data_dir: Path) -> None:
        manifest = json.loads((data_dir / "manifest.json").read_text())
        if manifest.get("dataset") != self.track.dataset:
            raise ValueError(f"dataset '{manifest.get('dataset')}' at {data_dir} is not track {self.track.name}'s '{self.track.dataset}'")
        self.vocab_size = int(manifest["vocab_size"])
        self.dataset_fingerprint = manifest.get("fingerprint")
        val = [open_shard(data_dir / s["file"], self.vocab_size) for s in manifest["val"]]
        self.val_files = {os.path.realpath(data_dir / s["file"]) for s in manifest["val"]}  # mapped by us
        val_all = np.concatenate([np.asarray(v) for v in val]) if val else np.zeros(0, np.int64)
        if len(val_all) < self.track.val_tokens:
            raise ValueError(f"the val split at {data_dir} has {len(val_all):,} tokens; track {self.track.name} needs {self.track.val_tokens:,}")
        self.val_tokens_np = val_all[: self.track.val_tokens].astype(np.int64)
        self._val_device = None
        self._pinned: list = []  # [pinned int32 (B, T + 1) buffer, cuda event of its last copy] × 2
        # the train split is opened, windowed, counted and served by the data process
        self.stream = StreamClient(data_dir, self.seq_len, self.batch_size, self.budget_tokens, self.seed,
                                   self.rank, self.world_size, self.track.val_tokens)
        self.heldout_tokens = self.stream.heldout_tokens
        self.local_batch_size = self.stream.local_batch_size

    def next_batch(self):
        """(x, y): (local_batch_size, seq_len) int64 on the device; the first call starts the clock."""
        import torch

        if self._in_warmup:
            raise ContractViolation("warmup_data", "the record asked for train data inside the untimed warm-up; warm up on dummy data")
        if self._in_eval:
            raise ContractViolation("eval_training", "the record asked for train data inside the evaluation pause")
        if not self._started:
            self._begin_training()
        on_cuda = self.device.startswith("cuda")
        if on_cuda:
            # the batch lands straight in one of two pinned buffers; the copy out of a buffer must
            # have finished before the buffer is filled again (two steps later, so never a wait in practice)
            if not self._pinned:
                shape = (self.local_batch_size, self.seq_len + 1)
                self._pinned = [[torch.empty(shape, dtype=torch.int32).pin_memory(), None] for _ in range(2)]
            slot = self._pinned[self.stream.batches_served % 2]
            if slot[1] is not None:
                slot[1].synchronize()
            buf = slot[0]
        try:
            arr = self.stream.next_numpy(buf.numpy() if on_cuda else None)
        except DataServerError as e:
            kind, _, detail = str(e).partition(": ")
            raise ContractViolation(kind if detail else "data", detail or str(e)) from None
        if on_cuda:
            t = buf.to(self.device, non_blocking=True)
            slot[1] = torch.cuda.Event()
            slot[1].record()
        else:
            t = torch.from_numpy(arr)
        t = t.long()  # (B, T + 1) int64 ids
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()

    @property
    def tokens(self) -> int:
        return self.stream.tokens_served

    def _begin_training(self) -> None:
        if self._post_warmup_digest is not None and self._watched:
            if integrity.param_digest(self._watched) != self._post_warmup_digest:
                raise ContractViolation("warmup_reset", "parameters changed between the end of the warm-up and the first train batch")
        served = self.stream.stats()["tokens_served"]
        if served:  # batches pulled from the data process around the session, before the clock ran
            raise ContractViolation("clock_tamper", f"{served:,} train tokens were taken from the data process before the clock started")
        self._started = True
        self._compiles_before = compile_count()
        self.events.emit("train_start", compiles_before=self._compiles_before)
        self.clock.start()
        self._span_t0 = check_ns()

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
        params_before = all_parameter_sums()
        optims_before = optimizer_digests()
        snapshot = [to_cpu(o.state_dict()) for o in stateful] if reset else None
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
            stray = changed_parameters(params_before, stateful)
            stray_optims = stepped_optimizers(optims_before, stateful)
            capped = elapsed_ms > self.warmup_cap_ms
            self.warmup_time_ms = min(elapsed_ms, self.warmup_cap_ms)
            if capped:  # time past the cap is training time
                self._warmup_excess_ns = int((elapsed_ms - self.warmup_cap_ms) * 1e6)
                self.clock._elapsed_ns += self._warmup_excess_ns
            self.events.emit("warmup_end", warmup_time_ms=elapsed_ms, capped=capped, restored=reset)
        if after != before:
            raise ContractViolation("warmup_reset", "the warm-up changed the model or optimizer state and did not reset it")
        if stray:
            raise ContractViolation("warmup_reset", f"{stray} parameter tensors not handed to h.warmup() changed during the warm-up")
        if stray_optims:
            raise ContractViolation("warmup_reset", f"{stray_optims} optimizer(s) not handed to h.warmup() stepped during the warm-up (a shadow model trained untimed)")

    # -- steps and evaluation -----------------------------------------------------------------
    def log_step(self, step: int, train_loss: float) -> None:
        loss = float(train_loss)
        self._last_train_loss, self._last_step = loss, int(step)
        self.events.emit("step", step=int(step), tokens=self.tokens, train_loss=loss, train_time_ms=self.clock.elapsed_ms())
        if not math.isfinite(loss):
            raise ContractViolation("nan", f"train loss is {loss} at step {step}")

    def evaluate(self, forward, step: int | None = None, val_tokens: int | None = None) -> float:
        """val loss of forward over the canonical val set (or its first val_tokens: progress only).
        the train clock pauses; the evaluated weights and grads must come out unchanged, and no
        train batch or autograd graph may be made inside the pause. a full evaluation also runs
        the causality probe on one of its batches."""
        import torch

        was_running = self.clock.running
        self.clock.stop()
        pause_t0, span_pause_t0 = now_ns(), check_ns()
        compiles_t0 = compile_count()  # compiles in the pause are untimed: not counted as timed
        if isinstance(forward, torch.nn.Module):
            self.watch(forward)
        full = val_tokens is None or int(val_tokens) >= self.track.val_tokens
        probe = Probe(self.vocab_size) if full else None
        val = self._val_on_device()
        if val_tokens is not None:
            val = val[: int(val_tokens)]
        loss, n = self._run_eval(forward, val, probe)
        self._integrity_checks()
        ms = device_ms_since(pause_t0, self.device)
        step = self._last_step if step is None else int(step)
        if probe is not None:
            self._causality = probe
        self._last_eval = {"step": step, "val_loss": loss, "full": full, "tokens": self.tokens}
        self.events.emit("eval", step=step, tokens=self.tokens, train_time_ms=self.clock.elapsed_ms(), val_loss=loss,
                         val_tokens=n, full=full, eval_time_ms=ms)
        say(eval_line(step, self.steps, self._last_train_loss, loss, self.clock.elapsed_ms(), self.tokens, full), self.is_main)
        if not math.isfinite(loss):
            raise ContractViolation("nan", f"val loss is {loss} at step {step}")
        # the whole pause counts as eval time: the clock check below adds train + pauses up to the span
        self.eval_time_ms += (now_ns() - pause_t0) / 1e6
        self._compiles_paused += compile_count() - compiles_t0
        if was_running:
            self._pause_ns_in_span += check_ns() - span_pause_t0
            self.clock.start()
        return loss

    def _run_eval(self, forward, tokens, probe: Probe | None) -> tuple[float, int]:
        """harness.evaluate.val_loss in eval mode, watching for training work inside the pause:
        parameters, gradients and optimizer state must come out unchanged, no autograd graph
        may be built, no train batch served."""
        import torch

        before = integrity.param_digest(self._watched, with_grads=True)
        # every model, watched or not: one scan of the heap finds them; the same tensors are read
        # again afterwards (training work inside the pause has to move a tensor alive before it)
        live = live_parameters()
        live_before = all_parameter_sums(with_grads=True, params=live)
        modes = [(m, m.training) for m in self._watched if hasattr(m, "train")]
        for m, _ in modes:
            m.eval()
        self._in_eval, self._eval_graph = True, False
        try:
            # an autograd graph that saves tensors inside the pause means backward work is being done
            with torch.autograd.graph.saved_tensors_hooks(self._pack_in_eval, _unpack):
                result = val_loss(forward, tokens, int(self.args.get("eval_seq_len", self.seq_len)),
                                  int(self.args.get("eval_batch_size", self.local_batch_size)),
                                  self.vocab_size, self.rank, self.world_size, probe=probe)
        finally:
            self._in_eval = False
            for m, mode in modes:
                m.train(mode)
        if self._eval_graph:
            raise ContractViolation("eval_training", "the record built an autograd graph inside the evaluation pause (backward work while the clock is stopped)")
        moved = changed_since(live_before, all_parameter_sums(with_grads=True, params=live))
        del live
        if moved or integrity.param_digest(self._watched, with_grads=True) != before:
            raise ContractViolation("eval_training", f"the model's parameters or gradients changed during evaluation ({moved} tensors; "
                                                     "training work inside the eval pause)")
        return result

    def _pack_in_eval(self, t):
        self._eval_graph = True
        return t

    def _integrity_checks(self) -> None:
        """harness code unchanged, data guard still armed, no dataset file mapped behind its back."""
        import harness

        integrity.check_code(harness)
        if not integrity.guard_intact():
            integrity.add_violation("data_access", "the record switched off the harness's data guard")
        for path in integrity.mapped_data_files(self.val_files):
            integrity.add_violation("data_access", f"record memory-mapped dataset file {path} itself (not through the harness stream)")

    def _val_on_device(self):
        import torch

        if self._val_device is None:
            self._val_device = torch.from_numpy(self.val_tokens_np).to(self.device)
        return self._val_device

    def finish(self, forward) -> dict:
        """stop the clock, make sure the last eval is full, then the causality and held-out checks."""
        import torch

        self.clock.stop()
        if self._started:
            self._compiles_timed = compile_count() - self._compiles_before - self._compiles_paused
        span_ms = (check_ns() - self._span_t0) / 1e6 if self._span_t0 is not None else None
        self._check_span(span_ms)
        if self._last_eval is None or not self._last_eval["full"] or self._last_eval["step"] != self._last_step:
            self.evaluate(forward, self._last_step)
        val = self._last_eval["val_loss"]
        checks_t0 = now_ns()
        probe = self._causality or Probe(self.vocab_size)
        heldout = self._heldout_check(forward, val, probe)
        causal = probe.result()
        T = int(self.args.get("eval_seq_len", self.seq_len))
        modes = [(m, m.training) for m in self._watched if hasattr(m, "train")]
        for m, _ in modes:
            m.eval()
        try:
            dtypes = scan_dtypes(forward, self._val_on_device()[:T].view(1, T), self._watched)
        finally:
            for m, mode in modes:
                m.train(mode)
        served = self.stream.stats()  # reads back the batch in flight first (stream.unused_tokens)
        if served["tokens_served"] != self.tokens + self.stream.unused_tokens:
            integrity.add_violation("data_access", f"the data process served {served['tokens_served']:,} tokens; the session counted "
                                                   f"{self.tokens:,} taken and {self.stream.unused_tokens:,} in flight")
        self._integrity_checks()
        self.events.emit("causality", **causal)
        self.events.emit("heldout", **heldout)
        peak = torch.cuda.max_memory_allocated(self.device) if self.device.startswith("cuda") else None
        self.summary = {
            "train_time_ms": self.clock.elapsed_ms(), "eval_time_ms": self.eval_time_ms,
            "warmup_time_ms": self.warmup_time_ms, "checks_time_ms": (now_ns() - checks_t0) / 1e6,
            "tokens": served["tokens_served"], "val_loss": val, "val_loss_full": True, "steps": self._last_step,
            "causal": causal["passed"], "max_leak": causal["max_leak"], "heldout_gap": heldout["gap"],
            "heldout_passed": heldout["passed"], "compiles_in_timed": self._compiles_timed,
            "peak_memory_bytes": peak, "dtypes": sorted(dtypes), "epochs": served["epoch"],
            "dataset_fingerprint": self.dataset_fingerprint, "train_span_ms": span_ms,
        }
        return self.summary

    def _check_span(self, span_ms: float | None) -> None:
        """the clock's train time plus the eval pauses must add up to the monotonic span of training."""
        if span_ms is None:
            return
        accounted_ms = (self.clock._elapsed_ns - self._warmup_excess_ns + self._pause_ns_in_span) / 1e6
        if abs(span_ms - accounted_ms) > SPAN_TOLERANCE * span_ms + SPAN_SLACK_MS:
            integrity.add_violation("clock_tamper", f"train time + eval pauses ({accounted_ms:.0f} ms) do not add up to the "
                                                    f"training span on an independent clock ({span_ms:.0f} ms)")

    def _heldout_check(self, forward, val: float, probe: Probe) -> dict:
        """the loss on the never-served tail of the train split (fetched now, once) against val."""
        if self.heldout_tokens < 2 * self.seq_len:
            return {"heldout_loss": None, "val_loss": val, "gap": None, "tokens": 0, "passed": True}
        import torch

        try:
            tail = torch.from_numpy(self.stream.heldout()).to(self.device)
        except DataServerError as e:
            raise ContractViolation("heldout", f"{str(e).partition(': ')[2] or e} (the record read the held-out tail itself)") from None
        loss, n = self._run_eval(forward, tail, probe)
        gap = loss - val
        return {"heldout_loss": loss, "val_loss": val, "gap": gap, "tokens": n, "margin": HELDOUT_MARGIN,
                "passed": bool(math.isfinite(gap) and gap <= HELDOUT_MARGIN)}


# -- small helpers ------------------------------------------------------------------------------
def _unpack(t):
    return t
