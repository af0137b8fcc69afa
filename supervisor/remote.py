"""the scorer's view of a record's claim server: a model that is sent inputs and returns logits.

a claim server (harness/claim_server.py, in a sandbox of the record's) runs a forward that could
not be exported. it holds no target and sees no other batch than the ones it is sent; what it
keeps between calls is its own, which is why the scorer sends the evaluation's batches to one
server and the probe's altered copies of them to others (a memory of the original cannot answer
its altered copy), shuffles the batches and asks for some again (a forward that remembers answers
them differently), and times every call: a call that takes
far longer than the others did work that answering cannot explain (a copy trained on the first
call, say), and fails the claim (CALL_FACTOR, CALL_SLACK_MS)."""
from __future__ import annotations

import os
import struct
from pathlib import Path

CALL_FACTOR = 10.0      # a call may take this many times the median call ...
CALL_SLACK_MS = 2000.0  # ... plus this (a first call's allocations and kernel loads)
REQUEST = struct.Struct("<qqq")
REPLY = struct.Struct("<qqqq")


class RemoteModel:
    def __init__(self, server: dict, vocab_size: int, device: str):
        self.fout = os.fdopen(int(server["to_claim_fd"]), "wb", buffering=0)
        self.fin = os.fdopen(int(server["from_claim_fd"]), "rb", buffering=0)
        self.path = Path(server["logits_dir"]) / "logits.bin"
        self.vocab, self.device = int(vocab_size), device
        self.call_ms: list[float] = []   # each call's time: a call that does far more work than the others shows

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.fin.read(n - len(buf))
            if not chunk:
                raise RuntimeError("the record's claim server ended (see log.txt)")
            buf += chunk
        return buf

    def __call__(self, x):
        import torch

        import time

        t0 = time.perf_counter()
        B, T = x.shape
        self.fout.write(REQUEST.pack(B, T, self.vocab) + x.to("cpu", torch.int64).numpy().tobytes())
        rb, rt, rv, status = REPLY.unpack(self._read(REPLY.size))
        if status != 0 or (rb, rt, rv) != (B, T, self.vocab):
            raise RuntimeError(f"the record's forward failed on a batch of ({B}, {T}) in its claim server (see log.txt)")
        logits = torch.from_file(str(self.path), shared=False, size=B * T * self.vocab, dtype=torch.float32)
        self.call_ms.append((time.perf_counter() - t0) * 1000)
        return logits.view(B, T, self.vocab).to(self.device)


def unexplained_call(call_ms: list[float]) -> str:
    """why the slowest call cannot be explained by answering (empty when it can)."""
    if len(call_ms) < 3:
        return ""
    ordered = sorted(call_ms)
    median, worst = ordered[len(ordered) // 2], ordered[-1]
    if worst > CALL_FACTOR * median + CALL_SLACK_MS:
        return (f"one of its calls took {worst / 1000:.2f} s against a median of {median / 1000:.3f} s: work that "
                "answering cannot explain")
    return ""
