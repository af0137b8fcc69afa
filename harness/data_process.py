"""the data process's side of harness.dataserver: the child that owns the train shards.

it opens the dataset, says hello (the sizes the client needs), then answers one command at a time
until its stdin ends; the wire format is described in harness/dataserver.py. the next train batch
is cut as soon as one is sent, so it crosses the pipe while the record computes."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

_LEN = struct.Struct("<Q")
_PAIR = struct.Struct("<qq")


def _send(out, status: bytes, payload: bytes) -> None:
    out.write(status + _LEN.pack(len(payload)) + payload)
    out.flush()


def serve(spec: dict, inp, out) -> None:
    """the data process's main: open the dataset, say hello, answer commands until EOF."""
    try:
        opened = _open_dataset(spec)
    except Exception as e:  # the session turns this into "harness could not start"
        _send(out, b"E", f"{type(e).__name__}: {e}".encode())
        return
    server = _Server(spec, *opened)
    _send(out, b"K", json.dumps(server.hello).encode())
    server.answer_until_eof(inp, out)


def _open_dataset(spec: dict):
    """the manifest, the train and val shards, the held-out size and the train stream."""
    from supervisor.shards import ShardFile
    from supervisor.stream import TrainStream, heldout_tokens_for

    data_dir = Path(spec["data_dir"])
    manifest = json.loads((data_dir / "manifest.json").read_text())
    vocab = int(manifest["vocab_size"])
    if vocab > 2**31:
        raise ValueError(f"vocabulary of {vocab:,} ids does not fit the int32 batches")
    # read with pread, never mapped: this process holds only what it has served
    shards = [ShardFile(data_dir / s["file"], vocab) for s in manifest["train"]]
    val_shards = [ShardFile(data_dir / s["file"], vocab) for s in manifest["val"]]
    heldout = heldout_tokens_for(sum(len(s) for s in shards), int(spec["val_tokens"]))
    stream = TrainStream(shards, int(spec["seq_len"]), int(spec["batch_size"]), int(spec["budget_tokens"]),
                         int(spec["seed"]), int(spec["rank"]), int(spec["world_size"]), heldout)
    return data_dir, manifest, shards, val_shards, heldout, stream


class _Server:
    """the opened dataset, the watch on its files, and the counts of what was served."""

    def __init__(self, spec: dict, data_dir: Path, manifest: dict, shards, val_shards, heldout: int, stream):
        from harness.filewatch import DataWatch
        from supervisor.stream import SegmentTokens, tail_segments

        # every file of the dataset (and its sources) is watched from here on: none is opened again by
        # this process, so any open the kernel reports is someone else's
        watched = [data_dir / "manifest.json", *(data_dir / s["file"] for s in manifest["train"] + manifest["val"]),
                   *map(Path, spec.get("guarded_files", []))]
        self.watch = DataWatch(watched, os.getppid())
        self.stream = stream
        train_total = int(sum(len(s) for s in shards))
        eval_T = int(spec.get("eval_seq_len") or spec["seq_len"])
        eval_B = int(spec.get("eval_batch_size") or stream.local_batch_size)
        progress_segs, check_segs = tail_segments(train_total, heldout, eval_T)
        self.progress_part = SegmentTokens(shards, progress_segs)
        # a record could train on what progress evals show it (real text the budget does not count): the
        # slice it may be shown is a tenth of its budget at most, and at least one eval window
        self.shown = min(len(self.progress_part), max(int(spec["budget_tokens"]) // 10, eval_T + 1))
        check_part = SegmentTokens(shards, check_segs)
        val_part = SegmentTokens(val_shards, [(0, min(int(spec["val_tokens"]), int(sum(len(s) for s in val_shards))))])
        self.hello = {"local_batch_size": stream.local_batch_size, "windows": stream.windows, "heldout_tokens": heldout,
                      "train_tokens": train_total, "progress_tokens": self.shown,
                      "check_tokens": len(check_part), "watched": self.watch.available, "watch_reason": self.watch.reason}
        self.reads = {"H": 0, "V": 0}
        # the eval streams are planned after the hello is sent: a tail too short for the check is
        # the session's to report (from the hello's check_tokens), not a crash of this process
        self.eval_parts = {"v": val_part, "c": check_part}
        self.eval_shape = (eval_T, eval_B)
        self.spec = spec
        self.evals: dict = {}
        self.sent = {"tokens_served": 0, "batches_served": 0, "epoch": 0}  # what the record has been given
        self.pending = None  # the reply to the next B, cut ahead

    def prepare_batch(self):
        """the reply to the next B: (status, payload, counters after it is sent)."""
        from supervisor.stream import BudgetExceeded

        stream = self.stream
        try:
            arr = stream.next_numpy().astype(np.int32)
        except BudgetExceeded as e:
            return b"E", f"budget: {e}".encode(), None
        after = {"tokens_served": stream.tokens_served, "batches_served": stream.batches_served, "epoch": stream.epoch}
        return b"K", _PAIR.pack(stream.tokens_served, stream.epoch) + arr.tobytes(), after

    def answer_until_eof(self, inp, out) -> None:
        """call after the hello is sent."""
        eval_T, eval_B = self.eval_shape
        self.evals = {k: _EvalStream(part, eval_T, eval_B, self.spec) for k, part in self.eval_parts.items()}
        self.pending = self.prepare_batch()
        while cmd := inp.read(1):  # EOF: the record's process ended
            if cmd == b"B":
                self.send_batch(out)
            else:
                _send(out, *self.answer(cmd))

    def send_batch(self, out) -> None:
        if self.reads["H"]:
            _send(out, b"E", b"heldout: the held-out tail was read before training ended (only the harness's check reads it); the train stream is closed")
            return
        status, payload, after = self.pending
        _send(out, status, payload)
        if after is not None:
            self.sent = after
        self.pending = self.prepare_batch()  # while the record computes

    def answer(self, cmd: bytes) -> tuple[bytes, bytes]:
        """the status and payload for any command but B."""
        if cmd in (b"v", b"c", b"w", b"d"):  # the claim's val set / the held-out check, window batch by batch
            key = {b"v": "v", b"w": "v", b"c": "c", b"d": "c"}[cmd]
            self.reads["V" if key == "v" else "H"] = 1
            ok, payload = self.evals[key].next(targets=cmd in (b"w", b"d"))
            return b"K" if ok else b"E", payload
        if cmd == b"P":  # the progress half of the tail: as often as asked
            return b"K", self.progress_part.read(0, self.shown).astype(np.int32).tobytes()
        if cmd == b"S":
            stats = {**self.sent, "heldout_reads": self.reads["H"], "val_reads": self.reads["V"], "watch": self.watch.report(),
                     **self.eval_counts()}
            return b"K", json.dumps(stats).encode()
        return b"E", f"protocol: unknown command {cmd!r}".encode()


    def eval_counts(self) -> dict:
        """how many of each evaluation's batches had their targets served, of how many: a claim whose
        val batches were not all served was not computed from the val set (harness.launch checks)."""
        out = {}
        for key, name in (("v", "val"), ("c", "check")):
            ev = self.evals.get(key)
            out[f"{name}_batches_served"] = ev.i if ev else 0
            out[f"{name}_batches"] = len(ev.plan) if ev else None
        return out


class _EvalStream:
    """one pass over an evaluation's windows, served once: a batch's inputs, then (after the forward)
    its targets; an empty reply after the last batch. asking again after the end is refused. each
    window is read from disk when it is served, inputs and targets apart, so this process never
    holds a token the record is about to be scored on before it asks for it."""

    def __init__(self, tokens, seq_len: int, batch_size: int, spec: dict):
        from supervisor.evaluate import window_plan

        self.tokens, self.seq_len = tokens, seq_len
        self.plan = window_plan(len(tokens), seq_len, batch_size, int(spec["rank"]), int(spec["world_size"]))
        self.i, self.inputs_sent, self.ended = 0, False, False

    def next(self, targets: bool) -> tuple[bool, bytes]:
        if self.ended:
            return False, b"eval: this evaluation's tokens were already served once in this run"
        if targets != self.inputs_sent:
            return False, b"protocol: an evaluation batch's targets come after its inputs, once"
        if self.i >= len(self.plan):
            self.ended = True
            return True, b""
        T, shift = self.seq_len, 1 if targets else 0
        rows = [self.tokens.read(w * T + shift, T) for w in self.plan[self.i]]
        if targets:
            self.i += 1
        self.inputs_sent = not targets
        return True, np.stack(rows).astype(np.int32).tobytes()
