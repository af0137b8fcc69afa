"""`python -m harness.claim_server FD_IN FD_OUT`: a pickled forward, answering the scorer.

used only when torch.export could not trace a record's forward (harness/handover.py). the
supervisor starts this in a fresh sandbox of the record's (its staged files, the handover folder
read-only, a folder for logits): the forward is unpickled with every tensor taken from
weights.bin, then each request (a batch of inputs on FD_IN) is answered with its logits, written
as float32 to `logits.bin` in the logits folder, and a header on FD_OUT. the targets never come
here: the scorer, in its own sandbox, computes the loss."""
from __future__ import annotations

import json
import os
import pickle
import struct
import sys
import traceback
from pathlib import Path
from types import MappingProxyType, SimpleNamespace

REQUEST = struct.Struct("<qqq")    # rows, positions, vocabulary columns to return
REPLY = struct.Struct("<qqqq")     # the same, and a status (0: logits written)


def read_weights(folder: Path, device: str) -> dict:
    import torch

    index = json.loads((folder / "weights.json").read_text())
    size = os.path.getsize(folder / "weights.bin")
    raw = torch.from_file(str(folder / "weights.bin"), shared=False, size=size, dtype=torch.uint8)
    out, by_offset = {}, {}
    for e in index["tensors"]:
        dtype = getattr(torch, e["dtype"])
        key = (e["offset"], e["dtype"], tuple(e["shape"]))
        if key not in by_offset:
            t = raw[e["offset"]:e["offset"] + e["nbytes"]].view(dtype).view(e["shape"]) if e["nbytes"] else torch.zeros(e["shape"], dtype=dtype)
            by_offset[key] = t.to(device if e["device"].startswith("cuda") else "cpu")
        out[e["name"]] = by_offset[key]
    return out


def main(argv: list[str]) -> int:
    import numpy as np
    import torch

    fd_in, fd_out = int(argv[1]), int(argv[2])
    sys.stdout = sys.stderr   # whatever the record's code prints goes to the log (its stdout is not read)
    folder, logits_dir = Path(os.environ["NANOPOOR_HANDOVER"]), Path(os.environ["NANOPOOR_LOGITS"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    weights = read_weights(folder, device)

    settings = json.loads((folder / "session.json").read_text()) if (folder / "session.json").exists() else {}
    stand_in = SimpleNamespace(**{**settings, "args": MappingProxyType(settings.get("args", {}))})

    class Unpickler(pickle.Unpickler):
        def persistent_load(self, pid):
            return stand_in if pid == "__session__" else weights[pid]

    with open(folder / "forward.pkl", "rb") as f:
        forward = Unpickler(f).load()
    rin, wout = os.fdopen(fd_in, "rb", buffering=0), os.fdopen(fd_out, "wb", buffering=0)
    while head := rin.read(REQUEST.size):
        B, T, V = REQUEST.unpack(head)
        x = torch.from_numpy(np.frombuffer(bytearray(rin.read(B * T * 8)), dtype=np.int64).reshape(B, T)).to(device)
        try:
            with torch.no_grad():
                logits = forward(x)
            path = logits_dir / "logits.bin"
            with open(path, "wb") as f:   # mapped, filled by one copy: the scorer maps the same pages
                f.truncate(B * T * V * 4)
            dst = torch.from_file(str(path), shared=True, size=B * T * V, dtype=torch.float32).view(B, T, V)
            dst.copy_(logits[..., :V])
            del dst
            wout.write(REPLY.pack(B, T, V, 0))
        except Exception:
            print(traceback.format_exc(), file=sys.stderr, flush=True)
            wout.write(REPLY.pack(B, T, V, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
