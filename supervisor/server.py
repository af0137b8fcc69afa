"""the supervisor's side of the socket: one thread per rank, the clock, and every event of training.

a rank connects, says hello, and gets the session's config. from then on each message is handled
as it arrives, under one lock: batches are cut and counted by the data feed, and the clock is
the supervisor's own monotonic clock. it starts when the first batch (or the progress slice) is
asked for, and stops when rank 0 says its weights are written: train time is the span between,
with nothing subtracted (there are no untimed pauses). the time from the record's start to its
first batch is its setup; setup beyond SETUP_CAP_S is charged to the train clock.

what a rank says about itself (a train loss, a progress loss, a violation it found) is written
down as the record's report; none of it is a number the board ranks."""
from __future__ import annotations

import math
import os
import socket
import threading
import time

from harness import wire
from supervisor import CONTRACT_VERSION
from supervisor.events import (EVAL, EXPORT, HANDOVER, RECORD_START, STEP, T4_LIMITS, TRAIN_START, VIOLATION,
                               WARMUP_END, WARMUP_START, eval_line)

SETUP_CAP_S = 600.0   # untimed setup (imports, model, compile, the warm-up section) a run may take; the rest is timed


class RankLink:
    """one rank's connection and what it has been sent."""

    def __init__(self, rank: int, hello: dict):
        self.rank, self.hello = rank, hello
        self.k = 0                 # global batches this rank has been sent a slice of
        self.last_ahead = False    # the last batch sent was asked for ahead (still on the wire)
        self.finished = False
        self.ended: dict | None = None


class RunServer:
    def __init__(self, config: dict, feed, events, runlog, sandbox_paths: dict, handover_dir=None):
        self.config, self.feed, self.events, self.runlog = config, feed, events, runlog
        self.handover_dir = handover_dir   # the host's path of the handover folder: hashed at the handover
        self.world_size = int(config.get("nproc") or 1)
        self.session_config = self._session_config(sandbox_paths)
        self.lock = threading.Lock()
        self.ranks: dict[int, RankLink] = {}
        self.violations: list[dict] = []
        self.record_start_ns: int | None = None
        self.t0_ns: int | None = None
        self.end_ns: int | None = None
        self.warmup_start_ns: int | None = None
        self.warmup_ms: float | None = None
        self.handover: dict | None = None
        self.export: dict | None = None
        self.last_step = 0
        self.last_train_loss: float | None = None
        self.progress_evals = 0
        self.progress_tokens = 0
        self.t4_applied: dict | None = None
        self.compiles_before: int | None = None   # the record's own count of compiled graphs at its first batch
        self.done = threading.Event()    # the export (or its failure), or rank 0's own end, arrived
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    def _session_config(self, paths: dict) -> dict:
        c = self.config
        args = dict(c.get("args") or {})
        return {"run_id": c["run_id"], "seed": c["seed"], "seq_len": c["seq_len"], "batch_size": c["batch_size"],
                "grad_accum": c["grad_accum"], "steps": c["steps"], "budget_tokens": c["budget_tokens"],
                "vocab_size": self.feed.vocab_size, "args": args, "as_t4": bool(c.get("as_t4")),
                "eval_seq_len": int(args.get("eval_seq_len", c["seq_len"])),
                "eval_batch_size": int(args.get("eval_batch_size", int(c["batch_size"]) // self.world_size)),
                "handover_dir": paths["handover"], "record_dir": paths["record"], "world_size": self.world_size}

    # -- the clock ----------------------------------------------------------------------------
    def span_ms(self) -> float:
        """first batch served to the handover (or now): what the clock saw."""
        if self.t0_ns is None:
            return 0.0
        return ((self.end_ns or time.monotonic_ns()) - self.t0_ns) / 1e6

    def train_time_ms(self) -> float:
        """the train clock: its span, plus setup past its cap (on the clock from the first batch)."""
        return self.span_ms() + self.setup_charged_ms()   # each is 0 before the first batch

    def setup_ms(self) -> float | None:
        if self.record_start_ns is None or self.t0_ns is None:
            return None
        return (self.t0_ns - self.record_start_ns) / 1e6

    def setup_charged_ms(self) -> float:
        setup = self.setup_ms()
        return max(0.0, setup - SETUP_CAP_S * 1000) if setup is not None else 0.0

    def _start_clock(self) -> None:
        if self.t0_ns is None:
            self.t0_ns = time.monotonic_ns()
            self.events.emit(TRAIN_START, setup_ms=self.setup_ms(), setup_cap_s=SETUP_CAP_S,
                             setup_charged_ms=self.setup_charged_ms())

    def tokens_taken(self) -> int:
        """global tokens rank 0 had taken (a batch sent ahead and not yet asked for is not taken)."""
        link = self.ranks.get(0)
        if link is None:
            return 0
        return (link.k - int(link.last_ahead)) * self.feed.batch_size * self.feed.seq_len

    def add_violation(self, kind: str, detail: str, reported_by: str = "supervisor") -> None:
        v = {"kind": kind, "detail": detail, "reported_by": reported_by}
        self.violations.append(v)
        self.events.emit(VIOLATION, **v)
        self.runlog.harness(f"violation: {kind}: {detail}" + (" (the record's own report)" if reported_by == "record" else ""))

    # -- the socket -----------------------------------------------------------------------------
    def listen(self, path: str) -> None:
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        os.chmod(path, 0o777)   # the sandbox's user is another uid inside its namespace
        self._listener.listen(64)
        t = threading.Thread(target=self._accept, name="supervisor-accept", daemon=True)
        t.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()

    def _serve(self, conn: socket.socket) -> None:
        try:
            msg, _ = wire.recv(conn)
            link = self._hello(conn, msg)
            if link is None:
                return
            while True:
                msg, payload = wire.recv(conn)
                with self.lock:
                    reply = self._handle(link, msg)
                if reply is not None:
                    wire.send(conn, *reply)
        except (wire.WireError, OSError):
            pass
        finally:
            conn.close()

    def _hello(self, conn: socket.socket, msg: dict) -> RankLink | None:
        with self.lock:
            rank = msg.get("rank")
            why = None
            if msg.get("op") != "hello" or msg.get("contract") != CONTRACT_VERSION:
                why = f"a hello for contract {msg.get('contract')!r}; this supervisor speaks {CONTRACT_VERSION}"
            elif not isinstance(rank, int) or not 0 <= rank < self.world_size or msg.get("world_size") != self.world_size:
                why = f"a connection claimed rank {rank!r} of {msg.get('world_size')!r}; the run has {self.world_size}"
            elif rank in self.ranks:
                why = f"a second connection claimed rank {rank}"
            if why is not None:
                self.add_violation("protocol", why)
                wire.send(conn, {"op": "refused", "error": f"protocol: {why}"})
                return None
            link = self.ranks[rank] = RankLink(rank, msg)
            if rank == 0:
                self.record_start_ns = time.monotonic_ns()
                self.events.emit(RECORD_START, pid=msg.get("pid"), torch=msg.get("torch") or {})
            wire.send(conn, {"op": "config", "config": self.session_config})
            return link

    # -- messages -------------------------------------------------------------------------------
    def _handle(self, link: RankLink, msg: dict):
        op = msg.get("op")
        handler = getattr(self, f"_on_{op}", None) if isinstance(op, str) and op.isidentifier() else None
        if handler is None:
            self.add_violation("protocol", f"rank {link.rank} sent an unknown message {op!r}")
            return None
        return handler(link, msg)

    def _on_batch(self, link: RankLink, msg: dict):
        if self.end_ns is not None:
            return {"ok": False, "error": "eval_order: a train batch asked for after the weights were handed over"}, b""
        if link.rank == 0 and self.compiles_before is None and isinstance(msg.get("compiles"), int):
            self.compiles_before = msg["compiles"]
        self._start_clock()
        link.last_ahead = False   # a rank asks again only once it took the batch it was sent ahead
        ok, data = self.feed.batch(link.rank, link.k)
        if not ok:
            return {"ok": False, "error": data}, b""
        link.k += 1
        link.last_ahead = bool(msg.get("ahead"))
        return {"ok": True, "tokens": self.feed.tokens_served, "epoch": self.feed.epoch}, data

    def _on_progress_slice(self, link: RankLink, msg: dict):
        self._start_clock()
        tokens = self.feed.progress_tokens()
        self.progress_tokens = max(self.progress_tokens, len(tokens))
        return {"ok": True, "tokens": len(tokens)}, tokens.tobytes()

    def _on_step(self, link: RankLink, msg: dict):
        if link.rank != 0:
            return None
        loss = _number(msg.get("train_loss"))
        self.last_step, self.last_train_loss = int(msg.get("step") or 0), loss
        self.events.emit(STEP, step=self.last_step, tokens=self.tokens_taken(), train_loss=loss,
                         train_time_ms=self.train_time_ms())
        return None

    def _on_progress_eval(self, link: RankLink, msg: dict):
        if link.rank != 0:
            return None
        loss, step, n = _number(msg.get("val_loss")), int(msg.get("step") or 0), int(msg.get("tokens") or 0)
        self.progress_evals += 1
        c, ms = self.session_config, self.train_time_ms()
        self.events.emit(EVAL, step=step, tokens=self.tokens_taken(), train_time_ms=ms, val_loss=loss, val_tokens=n,
                         full=False, split="progress", reported_by="record", untimed=False,
                         forward_ms=_number(msg.get("forward_ms")), eval_seq_len=c["eval_seq_len"],
                         eval_batch_size=c["eval_batch_size"])
        self.runlog.harness(eval_line(step, int(self.config["steps"]), self.last_train_loss, loss, ms, self.tokens_taken(), False))
        return None

    def _on_warmup(self, link: RankLink, msg: dict):
        if link.rank != 0:
            return None
        if msg.get("phase") == "start":
            self.warmup_start_ns = time.monotonic_ns()
            self.events.emit(WARMUP_START)
        elif self.warmup_start_ns is not None:
            self.warmup_ms = (time.monotonic_ns() - self.warmup_start_ns) / 1e6
            self.events.emit(WARMUP_END, warmup_time_ms=self.warmup_ms, restored=bool(msg.get("restored")),
                             capped=False)
        return None

    def _on_t4_limits(self, link: RankLink, msg: dict):
        if link.rank == 0:
            self.t4_applied = {k: v for k, v in msg.items() if k != "op"}
            self.events.emit(T4_LIMITS, **self.t4_applied)
        return None

    def _on_violation(self, link: RankLink, msg: dict):
        self.add_violation(str(msg.get("kind") or "record"), str(msg.get("detail") or "")[:2000], reported_by="record")
        return None

    def _on_handover(self, link: RankLink, msg: dict):
        if link.rank != 0 or self.end_ns is not None:
            self.add_violation("protocol", f"rank {link.rank} handed over weights {'again' if self.end_ns else ''}".strip())
            return None
        self.end_ns = time.monotonic_ns()
        self.handover = {k: msg.get(k) for k in ("bytes", "tensors", "modules", "write_ms", "peak_memory_bytes", "compiles")}
        # the weights are bound now: what the scorer reads later must be these bytes (a record that
        # says "handed over" before its weights are final, then trains on, is caught here)
        self.handover["sha256"] = handover_digest(self.handover_dir) if self.handover_dir else None
        self.events.emit(HANDOVER, train_time_ms=self.train_time_ms(), tokens=self.feed.tokens_served, **self.handover)
        return None

    def _on_exported(self, link: RankLink, msg: dict):
        if link.rank == 0 and self.handover is not None and self.export is None:
            self.export = {k: msg.get(k) for k in ("path", "export_ms", "export_error")}
            self.events.emit(EXPORT, **self.export)
            self.done.set()
        return None

    def _on_export_failed(self, link: RankLink, msg: dict):
        if link.rank == 0 and self.export is None:
            self.export = {"path": None, "failed": str(msg.get("reason")), "pickle": str(msg.get("pickle"))}
            self.events.emit(EXPORT, **self.export)
            self.done.set()
        return None

    def _on_finished(self, link: RankLink, msg: dict):
        link.finished = True
        return None

    def _on_ended(self, link: RankLink, msg: dict):
        link.ended = {k: msg.get(k) for k in ("status", "reason", "traceback")}
        link.ended["at_ns"] = time.monotonic_ns()   # the first rank to fail is the one whose failure is told
        if link.rank == 0:
            self.done.set()
        return None


def handover_digest(folder) -> str | None:
    """sha256 over weights.json and weights.bin (None when either is missing)."""
    import hashlib
    from pathlib import Path

    h = hashlib.sha256()
    try:
        for name in ("weights.json", "weights.bin"):
            with open(Path(folder) / name, "rb") as f:
                while chunk := f.read(1 << 24):
                    h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def _number(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else v
