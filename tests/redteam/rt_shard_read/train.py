# reads train tokens without the harness stream counting them. modes:
#   memmap      the seed's reader: np.memmap of a shard as uint16 at offset 1024 (left uncaught)
#   from_file   torch.from_file on a shard (c++ maps it, python's open() never runs)
#   ctypes      libc's open() and read() through ctypes
#   subprocess  cat the shard from a child process
#   memory      look for the train split in this process's memory (gc, the session's stream)
# every mode but memmap swallows the refusal and then trains honestly; several modes may be
# given, comma-separated.
import gc
import subprocess
from pathlib import Path

import numpy as np

import torch
import torch.nn as nn
import torch.nn.functional as F

import harness

h = harness.session()
a = h.args
V = (h.vocab_size + 63) // 64 * 64


class Causal(nn.Module):
    """embedding -> mean over the past -> mlp -> head (the honest model of rt_clean)."""

    def __init__(self, d):
        super().__init__()
        self.emb = nn.Embedding(V, d)
        self.mix = nn.Linear(d, d)
        self.head = nn.Linear(d, V, bias=False)

    def forward(self, x):                                  # x: (B, T)
        e = self.emb(x)                                    # (B, T, d)
        T = x.shape[1]
        w = torch.tril(torch.ones(T, T, device=x.device))
        ctx = (w / w.sum(-1, keepdim=True)) @ e            # (B, T, d)
        return self.head(torch.tanh(self.mix(ctx)) + e)    # (B, T, V)


modes = a.get("mode", "memmap").split(",")
shard = str(Path(h.config["data_dir"]) / "train_000000.bin")

for mode in modes:
    if mode == "memmap":
        tokens = np.memmap(shard, dtype=np.uint16, mode="r", offset=1024)
    elif mode == "from_file":
        try:
            tokens = torch.from_file(shard, size=4096, dtype=torch.uint8)
        except PermissionError as e:
            print(f"refused: {e}", flush=True)
    elif mode == "ctypes":
        try:
            import ctypes
            libc = ctypes.CDLL(None)
            fd = libc.open(shard.encode(), 0)
        except PermissionError as e:
            print(f"refused: {e}", flush=True)
    elif mode == "subprocess":
        try:
            raw = subprocess.run(["cat", shard], capture_output=True).stdout
        except PermissionError as e:
            print(f"refused: {e}", flush=True)
    elif mode == "memory":
        found = []
        for o in [vars(h.stream)] + [g for g in gc.get_objects() if isinstance(g, dict)]:
            for v in list(o.values()):
                if isinstance(v, np.ndarray) and v.ndim == 1 and v.size > 20_000:  # the train split holds 60,000
                    found.append(v.size)
        print("found train shard in memory" if found else "no train shard in memory", found[:3], flush=True)

model = Causal(int(a["d"])).to(h.device)
opt = torch.optim.AdamW(model.parameters(), lr=float(a["lr"]))
forward = model
for step in range(1, h.steps + 1):
    x, y = h.next_batch()
    loss = F.cross_entropy(forward(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    h.log_step(step, loss.item())
    if step % int(a["eval_every"]) == 0 and step < h.steps:
        h.evaluate(forward, step, val_tokens=2048)

h.finish(forward)
