"""starting the scorer (and, for a forward that could not be exported, the record's claim server),
feeding it the claim's tokens, and reading its verdict.

the scorer is supervisor code in a sandbox of its own: the handover folder read-only, the
supervisor package, the GPU, no network, no dataset (the tokens come on its stdin). it is started
as soon as the export arrives, so its imports overlap the record's exit. for a pickled forward,
the record's claim server runs in a second record sandbox (the staged record, the handover, a
folder for the logits it writes); the two talk through a pair of pipes the supervisor made."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from supervisor import sandbox

SCORER_TIMEOUT_S = 3600.0


class Scoring:
    def __init__(self, config: dict, work: Path, isolated: bool, server, feed, runlog):
        from supervisor.run import PACKAGE_ROOT, _die_with_parent, pump

        self.kind = "graph" if str(server.export.get("path", "")).endswith(".pt2") else "python"
        self.request = {"kind": self.kind, "vocab_size": feed.vocab_size, "as_t4": bool(config.get("as_t4")),
                        "eval_seq_len": server.session_config["eval_seq_len"],
                        "eval_batch_size": server.session_config["eval_batch_size"]}
        self.feed, self.claim_server = feed, None
        handover = work / "handover"
        logits = work / "logits"
        logits.mkdir(exist_ok=True)
        fds: tuple[int, ...] = ()
        if self.kind == "python":
            to_claim_r, to_claim_w = os.pipe()
            from_claim_r, from_claim_w = os.pipe()
            self.request.update(to_claim_fd=to_claim_w, from_claim_fd=from_claim_r,
                                logits_dir=sandbox.HANDOVER_DIR + "-logits" if isolated else str(logits))
            self.claim_server = self._start_claim_server(config, work, isolated, to_claim_r, from_claim_w, PACKAGE_ROOT,
                                                         _die_with_parent)
            pump(self.claim_server.stderr, runlog, "claim| ")
            os.close(to_claim_r)
            os.close(from_claim_w)
            fds = (to_claim_w, from_claim_r)
        self.request["handover_dir"] = sandbox.HANDOVER_DIR if isolated else str(handover)
        cmd = [sys.executable, "-m", "supervisor.scorer"]
        if isolated:
            mounts = sandbox.Mounts(ro=[(str(PACKAGE_ROOT / "supervisor"), f"{sandbox.CLIENT_ROOT}/supervisor"),
                                        (str(PACKAGE_ROOT / "harness"), f"{sandbox.CLIENT_ROOT}/harness"),
                                        (str(handover), sandbox.HANDOVER_DIR), (str(logits), sandbox.HANDOVER_DIR + "-logits")],
                                    env={"PYTHONPATH": sandbox.CLIENT_ROOT, "TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1"})
            cmd = sandbox.bwrap_command(mounts, cmd)
            env = None
        else:
            env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT), "TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1"}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                     cwd=str(work / "tmp"), start_new_session=True, preexec_fn=_die_with_parent, pass_fds=fds)
        for fd in fds:
            os.close(fd)
        self._err = pump(self.proc.stderr, runlog, "scorer| ")
        self._out: list[bytes] = []

    def _start_claim_server(self, config: dict, work: Path, isolated: bool, fd_in: int, fd_out: int, root: Path, die):
        cmd = [sys.executable, "-m", "harness.claim_server", str(fd_in), str(fd_out)]
        handover, logits = work / "handover", work / "logits"
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
        kill_tree(self.claim_server)


def emit_claim(events, runlog, server, claim: dict) -> None:
    """the claim's eval event and line, the causality and held-out events: the scorer's numbers."""
    from supervisor.events import CAUSALITY, EVAL, HELDOUT, eval_line

    if not claim or not claim.get("ok"):
        return
    c, ms, tokens = server.session_config, server.train_time_ms(), server.feed.tokens_served
    events.emit(EVAL, step=server.last_step, tokens=tokens, train_time_ms=ms, val_loss=claim["val_loss"],
                val_tokens=claim["val_tokens"], full=True, split="val", eval_time_ms=claim["eval_ms"],
                forward_ms=claim["forward_ms"], untimed=True, eval_seq_len=c["eval_seq_len"],
                eval_batch_size=c["eval_batch_size"], claim_path=claim.get("claim_path"))
    runlog.harness(eval_line(server.last_step, int(server.config["steps"]), server.last_train_loss, claim["val_loss"], ms,
                             tokens, True))
    events.emit(CAUSALITY, **claim["causality"])
    events.emit(HELDOUT, **claim["heldout"])
