"""starting the scorer (and, for a forward that could not be exported, the record's claim server),
feeding it the claim's tokens, and reading its verdict.

the scorer is supervisor code in a sandbox of its own: the handover folder read-only, the
supervisor package, the GPU, no network, no dataset (the tokens come on its stdin). it is started
with the run and waits on its stdin, so its imports overlap the record's setup and training. for a pickled forward,
the record's claim servers run in record sandboxes of their own (the staged record, the handover,
a folder for the logits each writes), one for the evaluation's batches and one for the probe's
altered copies; each talks to the scorer through a pair of pipes the supervisor made."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from supervisor import sandbox

SCORER_TIMEOUT_S = 3600.0
CLAIM_ROLES = ("eval", "probe")   # a claim server each, for a forward that could not be exported


class Scoring:
    """the scorer, started with the run (its imports overlap the record's setup and training: a
    process that waits on its stdin and holds nothing of the record's), told what to score when the
    export arrives, and asked for its verdict once the record has ended."""

    def __init__(self, config: dict, work: Path, isolated: bool, runlog):
        self.config, self.work, self.isolated, self.runlog = config, work, isolated, runlog
        (work / "logits").mkdir(exist_ok=True)
        self.kind: str | None = None
        self.request: dict = {}
        self.feed = None
        self.claim_servers: list = []
        self.proc = None
        self._start_scorer([])

    def prepare(self, server, feed) -> None:
        """the export arrived: what to score. a pickled forward needs the record's claim servers,
        whose pipes the scorer must hold from its start, so it is started again with them."""
        from supervisor.run import PACKAGE_ROOT, _die_with_parent, kill_tree, pump

        path = str(server.export.get("path") or "")
        self.kind = "graph" if path.endswith(".pt2") else "python" if path else "none"
        self.request = {"kind": self.kind, "vocab_size": feed.vocab_size, "as_t4": bool(self.config.get("as_t4")),
                        "eval_seq_len": server.session_config["eval_seq_len"],
                        "eval_batch_size": server.session_config["eval_batch_size"],
                        "handover_dir": sandbox.HANDOVER_DIR if self.isolated else str(self.work / "handover")}
        self.feed = feed
        if self.kind != "python":   # the started scorer reads a graph; with no export there is nothing to score
            return
        kill_tree(self.proc)
        logits, fds = self.work / "logits", []
        # one claim server for the evaluation's own batches, one for the probe's altered copies of
        # them: neither sees what the other was sent, so a forward that remembers a batch cannot
        # answer the probe's copies of it from that memory (docs/trust.md, D3). the probe's server
        # gets a batch's cut copies before its row-swapped ones (which hold whole original rows)
        self.request["claim_servers"] = {}
        for role in CLAIM_ROLES:
            (logits / role).mkdir(exist_ok=True)
            to_claim_r, to_claim_w = os.pipe()
            from_claim_r, from_claim_w = os.pipe()
            where = f"{sandbox.HANDOVER_DIR}-logits/{role}" if self.isolated else str(logits / role)
            self.request["claim_servers"][role] = {"to_claim_fd": to_claim_w, "from_claim_fd": from_claim_r,
                                                   "logits_dir": where}
            proc = self._start_claim_server(self.config, self.work, self.isolated, role, to_claim_r, from_claim_w,
                                            PACKAGE_ROOT, _die_with_parent)
            pump(proc.stderr, self.runlog, f"claim {role}| ")
            os.close(to_claim_r)
            os.close(from_claim_w)
            fds += [to_claim_w, from_claim_r]
            self.claim_servers.append(proc)
        self._start_scorer(fds)

    def _start_scorer(self, fds: list[int]) -> None:
        from supervisor.run import PACKAGE_ROOT, _die_with_parent, pump

        handover, logits = self.work / "handover", self.work / "logits"
        cmd = [sys.executable, "-m", "supervisor.scorer"]
        if self.isolated:
            mounts = sandbox.Mounts(ro=[(str(PACKAGE_ROOT / "supervisor"), f"{sandbox.CLIENT_ROOT}/supervisor"),
                                        (str(PACKAGE_ROOT / "harness"), f"{sandbox.CLIENT_ROOT}/harness"),
                                        (str(handover), sandbox.HANDOVER_DIR), (str(logits), sandbox.HANDOVER_DIR + "-logits")],
                                    env={"PYTHONPATH": sandbox.CLIENT_ROOT, "TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1"})
            cmd = sandbox.bwrap_command(mounts, cmd)
            env = None
        else:
            env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT), "TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1"}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                     cwd=str(self.work / "tmp"), start_new_session=True, preexec_fn=_die_with_parent,
                                     pass_fds=tuple(fds))
        for fd in fds:
            os.close(fd)
        self._err = pump(self.proc.stderr, self.runlog, "scorer| ")
        self._out: list[bytes] = []

    def _start_claim_server(self, config: dict, work: Path, isolated: bool, role: str, fd_in: int, fd_out: int, root: Path, die):
        cmd = [sys.executable, "-m", "harness.claim_server", str(fd_in), str(fd_out)]
        handover, logits = work / "handover", work / "logits" / role
        if isolated:
            mounts = sandbox.Mounts(ro=[(config["staged_dir"], sandbox.RECORD_DIR), (str(root / "harness"), f"{sandbox.CLIENT_ROOT}/harness"),
                                        (str(handover), sandbox.HANDOVER_DIR)],
                                    rw=[(str(logits), sandbox.HANDOVER_DIR + "-logits")],
                                    env={"PYTHONPATH": f"{sandbox.CLIENT_ROOT}:{sandbox.RECORD_DIR}",
                                         "NANOPOOR_HANDOVER": sandbox.HANDOVER_DIR,
                                         "NANOPOOR_LOGITS": sandbox.HANDOVER_DIR + "-logits"})
            cmd, env = sandbox.bwrap_command(mounts, cmd), None
        else:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), config["staged_dir"]]),
                   "NANOPOOR_HANDOVER": str(handover), "NANOPOOR_LOGITS": str(logits)}
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                                cwd=str(work / "tmp"), start_new_session=True, preexec_fn=die, pass_fds=(fd_in, fd_out))

    def result(self) -> dict:
        """the scorer's verdict (ok False with an error when it could not score)."""
        val, check = self.feed.eval_tokens("val"), self.feed.eval_tokens("check")
        req = {**self.request, "val_tokens": len(val), "check_tokens": len(check)}
        reader = threading.Thread(target=lambda: self._out.append(self.proc.stdout.read()), daemon=True)
        reader.start()
        try:
            self.proc.stdin.write(json.dumps(req).encode() + b"\n")
            self.proc.stdin.write(val.tobytes())
            self.proc.stdin.write(check.tobytes())
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(timeout=SCORER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.stop()
        reader.join(timeout=10)
        self._err.join(timeout=5)
        self.stop()
        lines = (self._out[0] if self._out else b"").decode("utf-8", "replace").strip().splitlines()
        try:
            return json.loads(lines[-1])
        except (IndexError, ValueError):
            return {"ok": False, "error": f"the scorer ended with code {self.proc.returncode} without a verdict (see log.txt)"}

    def stop(self) -> None:
        from supervisor.run import kill_tree

        kill_tree(self.proc)
        for proc in self.claim_servers:
            kill_tree(proc)


def emit_claim(events, runlog, server, claim: dict) -> None:
    """the claim's eval event and line, the causality and held-out events: the scorer's numbers. the
    train time they state is the run's final one (the clock's span plus what was charged to it), as
    run_end and result.json state it."""
    from supervisor.events import CAUSALITY, EVAL, HELDOUT, eval_line
    from supervisor.judge import final_train_ms

    if not claim or not claim.get("ok"):
        return
    c, tokens = server.session_config, server.feed.tokens_served
    ms = final_train_ms(server, server.feed, claim)[0]
    events.emit(EVAL, step=server.last_step, tokens=tokens, train_time_ms=ms, val_loss=claim["val_loss"],
                val_tokens=claim["val_tokens"], full=True, split="val", eval_time_ms=claim["eval_ms"],
                forward_ms=claim["forward_ms"], untimed=True, eval_seq_len=c["eval_seq_len"],
                eval_batch_size=c["eval_batch_size"], claim_path=claim.get("claim_path"))
    runlog.harness(eval_line(server.last_step, int(server.config["steps"]), server.last_train_loss, claim["val_loss"], ms,
                             tokens, True))
    events.emit(CAUSALITY, **claim["causality"])
    events.emit(HELDOUT, **claim["heldout"])
