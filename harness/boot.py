"""`python -m harness.boot RECORD/train.py [args...]`: start one rank of a record.

run by the supervisor inside the record's sandbox (under torchrun, once per rank). it imports
torch before the record's code exists (that time is not the record's), says hello to the
supervisor on the socket named by NANOPOOR_SOCKET, gets the session's config back, and runs the
record as __main__. however the record ends, it tells the supervisor how (`ended`), and the
process ends at once with os._exit, so nothing the record left running writes after it. what it
says is the record's own account: the supervisor decides the run's status from what it saw."""
from __future__ import annotations

import os
import runpy
import sys
import traceback
from pathlib import Path

from harness import CONTRACT_VERSION, wire

EXIT = {"completed": 0, "failed": 1, "invalid": 3, "aborted": 130}


def _device(world_size: int, local_rank: int) -> str:
    import torch

    if torch.cuda.is_available():
        device = f"cuda:{local_rank}" if world_size > 1 else "cuda"
        torch.cuda.set_device(torch.device(device).index or 0)
        return device
    return "cpu"


def _facts(device: str) -> dict:
    """what this process sees of its device: the record's account (the runner asks nvidia-smi)."""
    import torch

    facts = {"version": torch.__version__, "cuda": torch.version.cuda, "device": device}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device).index or 0)
        facts.update(device_name=props.name, capability=f"{props.major}.{props.minor}", memory_bytes=props.total_memory)
    return facts


def start() -> tuple:
    """connect, say hello, build the session (and the process group under torchrun)."""
    import torch  # noqa: F401  (the harness's own import, before the record's code: not setup time)

    from harness import session_api, t4_limits
    from harness.session_api import Session

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = _device(world, local)
    sock = wire.connect(os.environ["NANOPOOR_SOCKET"])
    wire.send(sock, {"op": "hello", "rank": rank, "world_size": world, "local_rank": local, "pid": os.getpid(),
                     "contract": CONTRACT_VERSION, "torch": _facts(device)})
    msg, _ = wire.recv(sock)
    if msg.get("op") != "config":
        raise RuntimeError(f"the supervisor refused this process: {msg.get('error', msg)}")
    config = msg["config"]
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    sess = Session(sock, config, rank, world, local, device)
    session_api.install(sess)
    if config.get("as_t4"):
        t4_limits.apply(sess)
    return sess


def run_record(script: str, args: list[str]) -> tuple[str, str, str | None]:
    """(status, reason, traceback) of the record's own run, as this process saw it."""
    from harness.contract_violation import ContractViolation

    try:
        sys.argv = [script, *args]
        sys.path.insert(0, str(Path(script).parent))
        runpy.run_path(script, run_name="__main__")
    except ContractViolation as e:
        return "invalid", f"{e.kind}: {e.detail}", None
    except KeyboardInterrupt:
        return "aborted", "interrupted (Ctrl-C)", None
    except SystemExit as e:
        if e.code not in (0, None):
            return "failed", f"record exited with code {e.code}", None
    except BaseException as e:
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
        return "failed", f"{type(e).__name__}: {e}", tb
    return "completed", "", None


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m harness.boot RECORD/train.py [args...]", file=sys.stderr)
        return 2
    try:
        sess = start()
    except Exception as e:
        print(f"harness could not start: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    status, reason, tb = run_record(str(Path(argv[1]).resolve()), argv[2:])
    if status == "completed" and not sess._finished:
        status, reason = "failed", "the record returned without calling h.finish()"
    try:
        sess.tell("ended", status=status, reason=reason, traceback=tb)
    except Exception:
        pass   # the supervisor is gone; it decides from what it saw
    return EXIT[status]


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no atexit handler or lingering thread of the record outlives its account
