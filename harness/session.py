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
from types import MappingProxyType

import numpy as np

import harness
from harness import CONTRACT_VERSION, __version__, integrity
from harness.causality import Probe
from harness.clock import Clock, check_ns, device_sync, now_ns
from harness.dataserver import DataServerError, StreamClient
from harness.evaluate import StreamWindows, TensorWindows, num_windows, val_loss
from harness.device_facts import compile_count, device_ms_since, scan_dtypes, torch_facts
from harness.events import EventLog, eval_line, say
from harness.tracks import Track
from harness.watch import (all_parameter_sums, autograd_nodes, capture_autograd_counter, changed_parameters, changed_since,
                           live_parameters, optimizer_digests, stepped_optimizers, to_cpu)

HELDOUT_MARGIN = 0.25  # nats: val this far below never-served train tokens means the model saw val
SPAN_TOLERANCE = 0.01  # train time + eval pauses must match the monotonic span within 1% ...
SPAN_SLACK_MS = 50.0   # ... plus this (scheduling between two clock reads)
MIN_HELDOUT_WINDOWS = 8  # a held-out check on fewer eval windows than this cannot run: the run does not start
MAX_UNTIMED_PROGRESS_EVALS = 100  # progress evals past this many run on the train clock
PAUSE_COST_FACTOR = 3.0  # a progress eval's forwards may cost this many times a train token each ...
COMPILING_PAUSES_EXEMPT = 2  # ... except the first pauses in which torch compiles (recorded either way)
# the autograd nodes a pause makes on the evaluating thread are recorded, not judged: every
# torch.autograd.Function call makes one even under no_grad (a compiled GPT's evaluation on an
# H200: ~97 a batch), so the count cannot tell an honest forward from a hidden backward
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
        # read-only: the evaluation's settings come from the frozen config, never from a dict the record holds
        self.args = MappingProxyType(dict(config.get("args", {})))
        self._join_ranks()
        # the same seed on every rank: models start identical; data differs by rank slice
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)
        torch.manual_seed(self.seed)

        run_dir = Path(config["run_dir"])
        self.events = EventLog(run_dir / "events.jsonl", enabled=self.is_main)
        self._eval_plan = (int(self.args.get("eval_seq_len", self.seq_len)),
                           int(self.args.get("eval_batch_size", self.batch_size // max(1, self.world_size))))
        capture_autograd_counter()
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
        self._pauses: list[dict] = []         # one per untimed progress eval: tokens, forward ms, compiled
        self._progress_device = None          # the progress half of the tail, fetched on first use
        self._progress_evals = 0
        self._finished = False
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
                         world_size=self.world_size, torch=torch_facts(self.device), args=dict(self.args),
                         eval_seq_len=self.eval_seq_len, eval_batch_size=self.eval_batch_size,
                         progress_tokens=self.stream.progress_tokens, heldout_check_tokens=self.stream.check_tokens,
                         data_watch={"watched": self.stream.watched, "reason": self.stream.watch_reason})

    def _join_ranks(self) -> None:
        """rank, world size and device from torchrun's environment; the process group under torchrun."""
        import torch

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

    # -- what harness.launch reads once the record is over --------------------------------------
    @property
    def last_step(self) -> int:
        """the step of the last log_step (or evaluate) call."""
        return self._last_step

    @property
    def last_eval(self) -> dict | None:
        """a copy of the last evaluation: step, val_loss, full (over the whole val set), tokens."""
        return None if self._last_eval is None else dict(self._last_eval)

    # -- data ---------------------------------------------------------------------------------
    @property
    def eval_seq_len(self) -> int:
        return self._eval_plan[0]

    @property
    def eval_batch_size(self) -> int:
        return self._eval_plan[1]

    def _load_data(self, data_dir: Path) -> None:
        manifest = json.loads((data_dir / "manifest.json").read_text())
        if manifest.get("dataset") != self.track.dataset:
            raise ValueError(f"dataset '{manifest.get('dataset')}' at {data_dir} is not track {self.track.name}'s '{self.track.dataset}'")
        self.vocab_size = int(manifest["vocab_size"])
        self.dataset_fingerprint = manifest.get("fingerprint")
        val_have = sum(int(s.get("tokens") or 0) for s in manifest["val"])
        if val_have < self.track.val_tokens:
            raise ValueError(f"the val split at {data_dir} has {val_have:,} tokens; track {self.track.name} needs {self.track.val_tokens:,}")
        # the val tokens stay in the data process until the claim's evaluation (h.finish) asks for
        # them, once: no val token is in this process while the record trains
        self.val_tokens = self.track.val_tokens
        self._pinned: list = []  # [pinned int32 (B, T + 1) buffer, cuda event of its last copy] × 2
        # the train split is opened, windowed, counted and served by the data process
        self.stream = StreamClient(data_dir, self.seq_len, self.batch_size, self.budget_tokens, self.seed,
                                   self.rank, self.world_size, self.track.val_tokens, self.eval_seq_len,
                                   self.config.get("guarded_files"), self.eval_batch_size)
        self.heldout_tokens = self.stream.heldout_tokens
        self.local_batch_size = self.stream.local_batch_size
        windows = num_windows(self.stream.check_tokens, self.eval_seq_len)
        if windows < MIN_HELDOUT_WINDOWS:
            raise ValueError(f"the held-out check cannot run: the never-served tail holds {windows} windows of "
                             f"{self.eval_seq_len + 1} tokens (at least {MIN_HELDOUT_WINDOWS} needed); use a shorter "
                             f"eval_seq_len or a dataset with a longer train split")

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
                self.clock.charge_ns(self._warmup_excess_ns)
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
        """a progress evaluation: the loss of forward over the progress slice (its first val_tokens),
        a half of the never-served end of the train split that neither the claim's evaluation (the
        val set, in h.finish) nor the held-out check reads. the train clock pauses for at most
        MAX_UNTIMED_PROGRESS_EVALS of them; the weights and grads must come out unchanged, no train
        batch may be taken inside the pause, and a pause longer than its
        forwards can explain is charged to the train clock at finish."""
        if self._finished:
            raise ContractViolation("eval_order", "h.evaluate() after h.finish()")
        if not self._started:
            self._begin_training()  # the record is shown tokens from here on: the clock runs
        untimed = self._progress_evals < MAX_UNTIMED_PROGRESS_EVALS
        self._progress_evals += 1
        was_running = self.clock.running
        if untimed:
            self.clock.stop()
        pause_t0, span_pause_t0 = now_ns(), check_ns()
        compiles_t0 = compile_count()
        if self._progress_device is None:
            import torch

            self._progress_device = torch.from_numpy(self.stream.progress()).to(self.device)
        tokens = self._progress_device
        if val_tokens is not None:
            tokens = tokens[: int(val_tokens)]
        source = TensorWindows(tokens, self.eval_seq_len, self.eval_batch_size, self.rank, self.world_size)
        loss, n, forward_ms, nodes = self._run_eval(forward, source, None)
        integrity.run_checks(harness)
        compiled = compile_count() - compiles_t0
        step = self._last_step if step is None else int(step)
        if untimed:
            self._pauses.append({"tokens": n, "forward_ms": forward_ms, "compiled": compiled, "autograd_nodes": nodes})
        self._last_eval = {"step": step, "val_loss": loss, "full": False, "tokens": self.tokens}
        self._emit_eval(step, loss, n, "progress", device_ms_since(pause_t0, self.device), forward_ms, untimed, nodes)
        if not math.isfinite(loss):
            raise ContractViolation("nan", f"progress loss is {loss} at step {step}")
        if untimed:
            # the whole pause counts as eval time: the clock check adds train + pauses up to the span
            self.eval_time_ms += (now_ns() - pause_t0) / 1e6
            self._compiles_paused += compiled
            if was_running:
                self._pause_ns_in_span += check_ns() - span_pause_t0
                self.clock.start()
        return loss

    def _emit_eval(self, step: int, loss: float, n: int, split: str, ms: float, forward_ms: float, untimed: bool,
                   nodes: int) -> None:
        full = split == "val"
        self.events.emit("eval", step=step, tokens=self.tokens, train_time_ms=self.clock.elapsed_ms(), val_loss=loss,
                         val_tokens=n, full=full, split=split, eval_time_ms=ms, forward_ms=forward_ms, untimed=untimed,
                         autograd_nodes=nodes,
                         eval_seq_len=self.eval_seq_len, eval_batch_size=self.eval_batch_size)
        say(eval_line(step, self.steps, self._last_train_loss, loss, self.clock.elapsed_ms(), self.tokens, full), self.is_main)

    def _run_eval(self, forward, source, probe: Probe | None) -> tuple[float, int, float, int]:
        """harness.evaluate.val_loss in eval mode, watching for training work inside the pause:
        parameters, gradients and optimizer state must come out unchanged, and no train batch may be
        served. returns (loss, predicted tokens, forward ms, autograd nodes made on this thread)."""
        import torch

        before = integrity.param_digest(self._watched, with_grads=True)
        # every model, watched or not: one scan of the heap finds them; the same tensors are read
        # again afterwards (training work inside the pause has to move a tensor alive before it)
        live = live_parameters()
        live_before = all_parameter_sums(with_grads=True, params=live)
        modes = [(m, m.training) for m in self._watched if hasattr(m, "train")]
        for m, _ in modes:
            m.eval()
        self._in_eval = True
        sync = device_sync(self.device)
        try:
            sync()
            nodes_t0, fwd_t0 = autograd_nodes(), now_ns()
            try:
                loss, n = val_loss(forward, source, self.vocab_size, self.world_size, probe=probe, device=self.device)
            except DataServerError as e:  # someone else read this evaluation's tokens from the data process
                kind = "val" if getattr(source, "kind", "") == "val" else "heldout"
                raise ContractViolation(kind, f"{str(e).partition(': ')[2] or e} (the record read the evaluation's tokens itself)") from None
            sync()
            forward_ms, nodes = (now_ns() - fwd_t0) / 1e6, autograd_nodes() - nodes_t0
        finally:
            self._in_eval = False
            for m, mode in modes:
                m.train(mode)
        moved = changed_since(live_before, all_parameter_sums(with_grads=True, params=live))
        del live
        if moved or integrity.param_digest(self._watched, with_grads=True) != before:
            raise ContractViolation("eval_training", f"the model's parameters or gradients changed during evaluation ({moved} tensors; "
                                                     "training work inside the eval pause)")
        return loss, n, forward_ms, nodes

    def finish(self, forward) -> dict:
        """stop the clock for good, charge unexplained pause time, then the claim's evaluation (the
        val set, served now for the first time, with the causality probe), the held-out check and
        the data process's own counts."""
        import torch

        if self._finished:
            raise ContractViolation("eval_order", "h.finish() was called twice")
        self._finished = True
        self.clock.stop()
        if self._started:
            self._compiles_timed = compile_count() - self._compiles_before - self._compiles_paused
        span_ms = (check_ns() - self._span_t0) / 1e6 if self._span_t0 is not None else None
        self._check_span(span_ms)
        charged_ms = self._charge_pauses()
        pause_t0 = now_ns()
        probe = Probe(self.vocab_size)
        val = StreamWindows(self.stream, "val", self.val_tokens, self.eval_seq_len, self.eval_batch_size, self.device,
                            self.rank, self.world_size)
        loss, n, forward_ms, nodes = self._run_eval(forward, val, probe)
        self._emit_eval(self._last_step, loss, n, "val", device_ms_since(pause_t0, self.device), forward_ms, True, nodes)
        self._last_eval = {"step": self._last_step, "val_loss": loss, "full": True, "tokens": self.tokens}
        self.eval_time_ms += (now_ns() - pause_t0) / 1e6
        if not math.isfinite(loss):
            raise ContractViolation("nan", f"val loss is {loss} at step {self._last_step}")
        checks_t0 = now_ns()
        heldout = self._heldout_check(forward, loss, probe)
        causal = probe.result()
        dtypes = self._claim_dtypes(forward, val.first_row.view(1, self.eval_seq_len))
        del val
        served = self._served_counts()
        watch = served.get("watch") or {}
        integrity.run_checks(harness)
        self.events.emit("causality", **causal)
        self.events.emit("heldout", **heldout)
        peak = torch.cuda.max_memory_allocated(self.device) if self.device.startswith("cuda") else None
        progress_tokens = sum(p["tokens"] for p in self._pauses)
        self.summary = {
            "train_time_ms": self.clock.elapsed_ms(), "eval_time_ms": self.eval_time_ms,
            "warmup_time_ms": self.warmup_time_ms, "checks_time_ms": (now_ns() - checks_t0) / 1e6,
            "tokens": served["tokens_served"], "val_loss": loss, "val_loss_full": True, "steps": self._last_step,
            "causal": causal["passed"], "max_leak": causal["max_leak"], "causal_reason": _causal_reason(causal),
            "heldout_gap": heldout["gap"],
            "heldout_passed": heldout["passed"], "compiles_in_timed": self._compiles_timed,
            "peak_memory_bytes": peak, "dtypes": sorted(dtypes), "epochs": served["epoch"],
            "dataset_fingerprint": self.dataset_fingerprint, "train_span_ms": span_ms,
            "progress_evals": self._progress_evals, "progress_eval_tokens": progress_tokens,
            "eval_charged_ms": charged_ms, "data_watch": bool(watch.get("watched")),
            "claim_autograd_nodes": nodes,
        }
        return self.summary

    def _claim_dtypes(self, forward, row) -> set:
        """the dtypes one eval-mode forward of a val row computes in (the watched models put back as they were)."""
        modes = [(m, m.training) for m in self._watched if hasattr(m, "train")]
        for m, _ in modes:
            m.eval()
        try:
            return scan_dtypes(forward, row, self._watched)
        finally:
            for m, mode in modes:
                m.train(mode)

    def _served_counts(self) -> dict:
        """the data process's own counts, checked against the session's, and its kernel watch's findings."""
        served = self.stream.stats()  # reads back the batch in flight first (stream.unused_tokens)
        if served["tokens_served"] != self.tokens + self.stream.unused_tokens:
            integrity.add_violation("data_access", f"the data process served {served['tokens_served']:,} tokens; the session counted "
                                                   f"{self.tokens:,} taken and {self.stream.unused_tokens:,} in flight")
        for detail in (served.get("watch") or {}).get("violations", [])[:5]:
            integrity.add_violation("data_access", f"dataset file opened around the harness stream: {detail}")
        return served

    def _charge_pauses(self) -> float:
        """an untimed progress eval whose forwards took longer than PAUSE_COST_FACTOR train tokens'
        worth of time per token evaluated did work its forwards cannot explain: the excess is train
        time. pauses in which torch compiled are let off (the first COMPILING_PAUSES_EXEMPT)."""
        if not self._pauses or not self.tokens:
            return 0.0
        ms_per_token = self.clock.elapsed_ms() / self.tokens
        excess, compiling = 0.0, 0
        for p in self._pauses:
            if p["compiled"]:
                compiling += 1
                if compiling <= COMPILING_PAUSES_EXEMPT:
                    continue
            excess += max(0.0, p["forward_ms"] - PAUSE_COST_FACTOR * p["tokens"] * ms_per_token)
        if excess > 0:
            self.clock.charge_ns(int(excess * 1e6))
            self.eval_time_ms -= excess
            self.events.emit("eval_charge", charged_ms=excess, ms_per_train_token=ms_per_token, factor=PAUSE_COST_FACTOR)
        return excess

    def _check_span(self, span_ms: float | None) -> None:
        """the clock's train time plus the eval pauses must add up to the monotonic span of training."""
        if span_ms is None:
            return
        accounted_ms = (self.clock.elapsed_ns - self._warmup_excess_ns + self._pause_ns_in_span) / 1e6
        if abs(span_ms - accounted_ms) > SPAN_TOLERANCE * span_ms + SPAN_SLACK_MS:
            integrity.add_violation("clock_tamper", f"train time + eval pauses ({accounted_ms:.0f} ms) do not add up to the "
                                                    f"training span on an independent clock ({span_ms:.0f} ms)")

    def _heldout_check(self, forward, val: float, probe: Probe) -> dict:
        """the loss on the check's half of the never-served tail (served now, once) against val."""
        tail = StreamWindows(self.stream, "check", self.stream.check_tokens, self.eval_seq_len, self.eval_batch_size,
                             self.device, self.rank, self.world_size)
        loss, n, _, _ = self._run_eval(forward, tail, probe)
        gap = loss - val
        return {"heldout_loss": loss, "val_loss": val, "gap": gap, "tokens": n, "margin": HELDOUT_MARGIN,
                "passed": bool(math.isfinite(gap) and gap <= HELDOUT_MARGIN)}


def _causal_reason(c: dict) -> str:
    """why the probe failed, in one clause (empty when it passed)."""
    if c["passed"]:
        return ""
    if not c["probed_batches"]:
        return "no evaluation batch could be probed"
    if not c["deterministic"]:
        return (f"the forward is not deterministic: two identical calls differ by {c['noise']:.3g} "
                f"(at most {c['noise_ceiling']:.3g} allowed; dropout left on?)")
    if c["cross_batch_leak"] > c["tolerance"]:
        return f"logits of one row moved by {c['cross_batch_leak']:.4g} when other rows of the batch changed"
    return f"logits at earlier positions moved by {c['max_leak']:.4g} when later tokens changed"
