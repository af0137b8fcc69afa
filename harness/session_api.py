"""the session a record talks to: its budget, its batches, its steps, and the handover at the end.

harness.boot builds it from the config the supervisor sends in answer to the client's hello,
before the record's code runs. nothing here is a number on the board: the supervisor counts the
tokens it sends, times training from the first batch it serves to the handover of the weights,
and computes the claim itself. the session only carries the record's side of that conversation
(and the conveniences a record relies on: seeding, the device, pinned batch buffers, the warm-up
section that puts the model back, a progress loss for the record's own display)."""
from __future__ import annotations

import math
import random
import time
from types import MappingProxyType

import numpy as np

from harness import wire
from harness.contract_violation import ContractViolation

_CURRENT: Session | None = None


def current() -> Session:
    if _CURRENT is None:
        raise RuntimeError("no harness session: run records through `nanopoor run RECORD`")
    return _CURRENT


def install(sess: Session) -> None:
    global _CURRENT
    _CURRENT = sess


def report_violation(kind: str, detail: str) -> None:
    """tell the supervisor at once (a record that catches the exception is still reported)."""
    if _CURRENT is not None:
        _CURRENT.tell("violation", kind=kind, detail=detail)


def compile_count() -> int:
    """graphs torch.compile has produced so far in this process (torch's own counter)."""
    import sys

    utils = sys.modules.get("torch._dynamo.utils")
    return int(utils.counters["stats"].get("unique_graphs", 0)) if utils is not None else 0


class Session:
    def __init__(self, sock, config: dict, rank: int, world_size: int, local_rank: int, device: str):
        import torch

        self._sock = sock
        self.config = MappingProxyType(dict(config))
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.is_main = rank == 0
        self.device = device
        self.seed = int(config["seed"])
        self.seq_len, self.batch_size = int(config["seq_len"]), int(config["batch_size"])
        self.grad_accum, self.steps = int(config["grad_accum"]), int(config["steps"])
        self.budget_tokens = int(config["budget_tokens"])
        self.vocab_size = int(config["vocab_size"])
        self.local_batch_size = self.batch_size // world_size
        self.args = MappingProxyType(dict(config.get("args") or {}))
        self.eval_seq_len, self.eval_batch_size = int(config["eval_seq_len"]), int(config["eval_batch_size"])
        # the same seed on every rank: models start identical; data differs by rank slice
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)
        torch.manual_seed(self.seed)
        self._pinned: list = []          # [pinned int32 (B, T + 1) buffer, cuda event of its last copy] × 2
        self._ahead = False              # a batch asked for ahead whose answer is still on the wire
        self._held: tuple | None = None  # that answer, read early to make room for another request
        self._batches_taken = 0
        self._progress = None            # the progress slice, on the device, fetched on first use
        self._in_warmup = False
        self._warmups = 0
        self._started = False
        self._started_batches = False
        self._finished = False
        self._last_step = 0

    # -- talking to the supervisor --------------------------------------------------------------
    def tell(self, op: str, **fields) -> None:
        """a one-way message (steps, progress losses, violations, the handover)."""
        try:
            wire.send(self._sock, {"op": op, **fields})
        except OSError as e:
            raise RuntimeError(f"the harness supervisor is gone ({e})") from None

    def _hold_ahead(self) -> None:
        """read the answer to the batch asked for ahead, so another request can be made first."""
        if self._ahead:
            msg, payload = wire.recv(self._sock)
            self._held, self._ahead = (msg, payload), False

    def _ask(self, op: str, **fields) -> tuple[dict, bytes | None]:
        self._hold_ahead()
        self.tell(op, **fields)
        return wire.recv(self._sock)

    # -- data ---------------------------------------------------------------------------------
    @property
    def tokens(self) -> int:
        """tokens this process has taken (the supervisor's own count is the one that counts)."""
        return self._batches_taken * self.batch_size * self.seq_len

    def next_batch(self):
        """(x, y): (local_batch_size, seq_len) int64 on the device. the first call starts the
        supervisor's clock; past the declared budget it raises (and nothing past it is ever sent)."""
        import torch

        if self._in_warmup:
            raise ContractViolation("warmup_data", "the record asked for train data inside the warm-up; warm up on dummy data")
        self._started = True
        shape = (self.local_batch_size, self.seq_len + 1)
        on_cuda = self.device.startswith("cuda")
        if on_cuda:
            # the batch lands straight in one of two pinned buffers; the copy out of a buffer must
            # have finished before it is filled again (two steps later: never a wait in practice)
            if not self._pinned:
                self._pinned = [[torch.empty(shape, dtype=torch.int32).pin_memory(), None] for _ in range(2)]
            slot = self._pinned[self._batches_taken % 2]
            if slot[1] is not None:
                slot[1].synchronize()
            arr = slot[0].numpy()
        else:
            arr = np.empty(shape, dtype=np.int32)
        msg = self._receive_batch(arr)
        if not msg.get("ok"):
            kind, _, detail = str(msg.get("error", "data: no batch")).partition(": ")
            raise ContractViolation(kind if detail else "data", detail or kind)
        self._batches_taken += 1
        self.tell("batch", ahead=True)  # the next one crosses the socket while the record computes
        self._ahead = True
        if on_cuda:
            t = slot[0].to(self.device, non_blocking=True)
            slot[1] = torch.cuda.Event()
            slot[1].record()
        else:
            t = torch.from_numpy(arr)
        t = t.long()  # (B, T + 1) int64 ids
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()

    def _receive_batch(self, arr: np.ndarray) -> dict:
        if self._held is not None:
            (msg, payload), self._held = self._held, None
            if msg.get("ok"):
                arr.reshape(-1)[:] = np.frombuffer(payload, dtype=np.int32)
            return msg
        if not self._ahead:
            first = {} if self._started_batches else {"compiles": compile_count()}   # the record's own count
            self._started_batches = True
            self.tell("batch", ahead=False, **first)
        self._ahead = False
        msg, payload = wire.recv(self._sock, out=arr)
        if msg.get("ok") and payload is not None:
            raise wire.WireError(f"a batch of {len(payload)} bytes; expected {arr.nbytes}")
        return msg

    def _progress_tokens(self):
        """the progress slice (half of the never-served train tail, never the val set), fetched once."""
        import torch

        if self._progress is None:
            msg, payload = self._ask("progress_slice")
            if not msg.get("ok"):
                raise ContractViolation("data", str(msg.get("error")))
            self._started = True
            self._progress = torch.from_numpy(np.frombuffer(payload, dtype=np.int32).astype(np.int64)).to(self.device)
        return self._progress

    # -- warm-up, steps, progress, the end ------------------------------------------------------
    def warmup(self, *objs, reset: bool = True):
        """one section before the first batch (compilation on dummy data); on exit every handed-in
        object's state_dict is put back. untimed like the rest of the setup, which the supervisor
        times and caps from outside."""
        from harness.warmup import warmup_section

        return warmup_section(self, objs, reset=reset)

    def log_step(self, step: int, train_loss: float) -> None:
        loss = float(train_loss)
        self._last_step = int(step)
        self.tell("step", step=int(step), train_loss=loss)
        if not math.isfinite(loss):
            raise ContractViolation("nan", f"train loss is {loss} at step {step}")

    def evaluate(self, forward, step: int | None = None, val_tokens: int | None = None) -> float:
        """the loss of forward over the progress slice (its first val_tokens), for the record's own
        display: it runs on the train clock (there are no untimed pauses), and the supervisor logs
        it as reported by the record. the claim's val loss is computed by the supervisor alone."""
        from harness.progress import progress_loss

        if self._finished:
            raise ContractViolation("eval_order", "h.evaluate() after h.finish()")
        tokens = self._progress_tokens()
        if val_tokens is not None:
            tokens = tokens[: int(val_tokens)]
        t0 = time.perf_counter()
        loss, n = progress_loss(forward, tokens, self)
        step = self._last_step if step is None else int(step)
        if self.is_main:
            self.tell("progress_eval", step=step, val_loss=loss, tokens=n, forward_ms=(time.perf_counter() - t0) * 1000)
        if not math.isfinite(loss):
            raise ContractViolation("nan", f"progress loss is {loss} at step {step}")
        return loss

    def finish(self, forward) -> dict:
        """hand the final weights over (the supervisor's clock stops when they are written), then
        the forward as an exported graph; the supervisor scores the claim from those alone."""
        from harness.handover import hand_over

        if self._finished:
            raise ContractViolation("eval_order", "h.finish() was called twice")
        self._finished = True
        return hand_over(self, forward)
