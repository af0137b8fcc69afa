"""the train stream in its own process, so the record's process never holds the train shards.

a record could otherwise read tokens straight out of the memory-mapped shards (`h.stream.shards`,
or any array gc can find) without them being counted. here a small child process (numpy only)
owns the shards and the TrainStream: it counts every batch it hands out, refuses to pass the
budget, and serves the never-served held-out tail exactly once, for the held-out check at the
end. the record's process only ever sees the batches it was served and, at finish, the tail.

protocol over the child's stdin/stdout pipes: the client writes one command byte (B batch,
H held-out tail, S stats); the child answers one status byte (K ok, E error), an 8-byte length
and that many bytes. a batch payload is tokens_served (int64), epoch (int64), then the
(local_batch_size, seq_len + 1) int32 window (ids < 2**31; half the bytes of int64, widened on
the device). EOF on stdin ends the child. the child's side is harness/data_process.py.

the child cuts the next batch as soon as it has sent one, and the client asks for the next batch
as soon as it has read one, so while the record computes, the next batch crosses the pipe and a
fetch only reads what is already there (the round trip cost ~1% of a 73 ms H100 step). the child
counts a batch when it sends it; the client counts it when the record takes it (`tokens_served`,
the number in result.json). so at most one batch is in flight: at the end the client reads it
back (`drain`) and reports it as `unused_tokens`, and the child's count must equal the session's
plus that. a budget refusal travels the same way and is raised only when the record asks for
that batch. a record that reads the pipe itself takes a batch the client then never sees: the
client waits REPLY_TIMEOUT_S for it and stops the run with a data_access violation."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

import numpy as np

from harness.data_process import _LEN, _PAIR, serve  # noqa: F401  (serve: the child's entry, see _CHILD)

REPLY_TIMEOUT_S = 300.0  # the child answers at once; silence this long (even on a loaded machine) means the reply was taken


_CHILD = "import json, sys; from harness.dataserver import serve; serve(json.loads(sys.argv[1]), sys.stdin.buffer, sys.stdout.buffer)"


class DataServerError(RuntimeError):
    """the data process refused a request (message is one line) or died."""


# -- the record's side ----------------------------------------------------------------------------
class StreamClient:
    """what the session holds instead of a TrainStream: the same counters, fed by the child."""

    def __init__(self, data_dir, seq_len: int, batch_size: int, budget_tokens: int, seed: int,
                 rank: int, world_size: int, val_tokens: int, eval_seq_len: int | None = None,
                 guarded_files: list[str] | None = None, eval_batch_size: int | None = None):
        spec = {"data_dir": str(data_dir), "seq_len": seq_len, "batch_size": batch_size, "budget_tokens": budget_tokens,
                "seed": seed, "rank": rank, "world_size": world_size, "val_tokens": val_tokens,
                "eval_seq_len": eval_seq_len or seq_len, "eval_batch_size": eval_batch_size or batch_size // world_size,
                "guarded_files": list(guarded_files or [])}
        self.eval_seq_len = eval_seq_len or seq_len
        # the child imports this very harness package: its folder is both cwd and PYTHONPATH
        root = str(Path(__file__).resolve().parent.parent)
        self._proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(spec)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root,
                                      env={**os.environ, "PYTHONPATH": root}, bufsize=0)
        self.seq_len = seq_len
        self.tokens_served, self.epoch, self.batches_served = 0, 0, 0
        self.unused_tokens = 0      # sent by the child ahead of a request the record never made
        self._in_flight = False     # a B request whose reply the client has not read yet
        self._held: bytes | None = None  # a batch reply read early (to ask the child something else), not yet taken
        hello = json.loads(self._reply(ValueError))
        self.local_batch_size = int(hello["local_batch_size"])
        self.windows = int(hello["windows"])
        self.heldout_tokens = int(hello["heldout_tokens"])
        self.train_tokens = int(hello["train_tokens"])
        self.progress_tokens, self.check_tokens = int(hello["progress_tokens"]), int(hello["check_tokens"])
        self.watched, self.watch_reason = bool(hello["watched"]), hello["watch_reason"]
        self.pid = self._proc.pid

    def _read(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self._proc.stdout.read(n - len(buf))
            if not chunk:
                raise DataServerError("the harness data process ended unexpectedly")
            buf += chunk
        return bytes(buf)

    def _readinto(self, view: memoryview) -> None:
        got = 0
        while got < len(view):
            n = self._proc.stdout.readinto(view[got:])
            if not n:
                raise DataServerError("the harness data process ended unexpectedly")
            got += n

    def _header(self, error=DataServerError) -> int:
        """the status and length of a reply; an error reply is read whole and raised."""
        ready, _, _ = select.select([self._proc.stdout], [], [], REPLY_TIMEOUT_S)
        if not ready:
            raise DataServerError(f"data_access: no reply from the harness data process in {REPLY_TIMEOUT_S:.0f} s: "
                                  "a batch already sent was taken from the pipe by someone else (the record?)")
        status = self._read(1)
        length = _LEN.unpack(self._read(_LEN.size))[0]
        if status != b"K":
            raise error(self._read(length).decode(errors="replace"))
        return length

    def _reply(self, error=DataServerError) -> bytes:
        return self._read(self._header(error))

    def _send_cmd(self, cmd: bytes) -> None:
        try:
            self._proc.stdin.write(cmd)
        except (BrokenPipeError, ValueError):
            raise DataServerError("the harness data process is gone") from None

    def _ask(self, cmd: bytes) -> bytes:
        self.drain()
        self._send_cmd(cmd)
        return self._reply()

    def drain(self) -> None:
        """read back the batch in flight (asked for ahead, never taken by the record), if any."""
        self._hold()
        if self._held is None:
            return
        held, self._held = self._held, None
        if held[:1] == b"K":
            self.unused_tokens += _PAIR.unpack_from(held, 1)[0] - self.tokens_served
        elif not held[1:].startswith(b"budget: "):  # a budget refusal is for a batch nobody asked for
            raise DataServerError(held[1:].decode(errors="replace"))

    def next_numpy(self, out: np.ndarray | None = None) -> np.ndarray:
        """(local_batch_size, seq_len + 1) int32, read straight into `out` when given (e.g. a pinned
        buffer); raises DataServerError('budget: ...') past the budget."""
        shape = (self.local_batch_size, self.seq_len + 1)
        if out is None:
            out = np.empty(shape, dtype=np.int32)
        if out.shape != shape or out.dtype != np.int32 or not out.flags.c_contiguous:
            raise ValueError(f"batch buffer must be a contiguous int32 array of shape {shape}")
        if self._held is not None:
            held, self._held = self._held, None
            if held[:1] == b"E":
                raise DataServerError(held[1:].decode(errors="replace"))
            self.tokens_served, self.epoch = _PAIR.unpack_from(held, 1)
            out.reshape(-1)[:] = np.frombuffer(held, dtype=np.int32, offset=1 + _PAIR.size)
        else:
            if not self._in_flight:
                self._send_cmd(b"B")
            self._in_flight = False
            length = self._header()
            if length != _PAIR.size + out.nbytes:
                raise DataServerError(f"protocol: a batch of {length} bytes, expected {_PAIR.size + out.nbytes}")
            self.tokens_served, self.epoch = _PAIR.unpack(self._read(_PAIR.size))
            self._readinto(memoryview(out).cast("B"))
        self.batches_served += 1
        self._send_cmd(b"B")  # the next one crosses the pipe while the record computes
        self._in_flight = True
        return out

    def _hold(self) -> None:
        """read the batch in flight into memory so another request can be made mid-training; the
        record takes it with its next next_numpy() as if it had come then."""
        if not self._in_flight:
            return
        self._in_flight = False
        try:
            length = self._header()
        except DataServerError as e:
            self._held = b"E" + str(e).encode()
            return
        self._held = b"K" + self._read(length)

    def eval_inputs(self, kind: str) -> np.ndarray:
        """(B, T) int64: the inputs of the next batch of the claim's evaluation ("val") or of the
        held-out check ("check"); each is served once, after training."""
        return self._eval_reply(b"v" if kind == "val" else b"c")

    def eval_targets(self, kind: str) -> np.ndarray:
        """(B, T) int64: the targets of the batch whose inputs were served last."""
        return self._eval_reply(b"w" if kind == "val" else b"d")

    def _eval_reply(self, cmd: bytes) -> np.ndarray:
        T = self.eval_seq_len
        return np.frombuffer(self._ask(cmd), dtype=np.int32).astype(np.int64).reshape(-1, T)

    def progress(self) -> np.ndarray:
        """the progress evals' half of the never-served tail (neither the claim nor the check reads it).
        asked for mid-training: the batch in flight is held for the record, not drained."""
        self._hold()
        self._send_cmd(b"P")
        return np.frombuffer(self._reply(), dtype=np.int32).astype(np.int64)

    def stats(self) -> dict:
        """the child's own count of what it served (the record's process cannot change it)."""
        return json.loads(self._ask(b"S"))

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout=5)
            except Exception:
                self._proc.kill()
