"""the session a record talks to: data, clock, evaluation and the checks, in one object.

`harness.launch` builds it from the runner's config.json before the record's code runs (so the
dataset is opened before the data guard is armed); the record gets it with harness.session().
the train split lives in a separate data process (harness.dataserver): this process only
ever holds the batches it was served, the val split and, at finish, the held-out tail.

this module holds the session's state, its data and the clock's start; the warm-up section
(harness.warmup_section), the evaluation pause (harness.eval_pause) and finish's claim, probe and
held-out check (harness.claim) work on that state and are reached through the methods below."""
from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from types import MappingProxyType

import numpy as np

from harness import CONTRACT_VERSION, __version__, claim, integrity
from supervisor.causality import Probe
from harness.clock import Clock, check_ns, device_sync
from harness.contract_violation import ContractViolation
from harness.dataserver import DataServerError, StreamClient
from harness.device_facts import compile_count, torch_facts
from harness.eval_pause import progress_eval, run_eval
from supervisor.evaluate import num_windows
from supervisor.events import EventLog
from supervisor.tracks import Track
from harness.warmup_section import warmup_section
from harness.watch import capture_autograd_counter

MIN_HELDOUT_WINDOWS = 8  # a held-out check on fewer eval windows than this cannot run: the run does not start
_SESSION: Session | None = None


def session() -> Session:
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

    def _compile_count(self) -> int:
        """torch's compiles so far. the pause and finish (harness.eval_pause, harness.claim) count
        through here, so this module's compile_count is the one name a test stands a counter in for."""
        return compile_count()

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

    def warmup(self, *objs, reset: bool = True):
        """one untimed section before training (compilation on dummy data). on exit the harness
        restores every object's state_dict (models, optimizers, scalers) and checks the digest."""
        return warmup_section(self, objs, reset=reset)

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
        return progress_eval(self, forward, step, val_tokens)

    def _run_eval(self, forward, source, probe: Probe | None) -> tuple[float, int, float, int]:
        """every evaluation's pause and its checks (harness.eval_pause.run_eval)."""
        return run_eval(self, forward, source, probe)

    def finish(self, forward) -> dict:
        """stop the clock for good, charge unexplained pause time, then the claim's evaluation (the
        val set, served now for the first time, with the causality probe), the held-out check and
        the data process's own counts."""
        return claim.finish(self, forward)
