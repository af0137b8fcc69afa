# everything a record would reach for to learn what it should not, tried before its first batch
# from its own process, then the honest record (rt_clean). each reach prints one line
# `REACH name: what it got`; the test reads them. args.paths names files and folders of the
# machine the test knows are there (the dataset, the corpus, the project's tree, the home folder):
# none may be readable from here. nothing is caught and nothing is refused by the harness: the
# sandbox is simply empty of them.
import json
import os
import socket
import subprocess

import torch
import torch.nn as nn
import torch.nn.functional as F

import harness

h = harness.session()
a = h.args
V = (h.vocab_size + 63) // 64 * 64


def reach(name, fn):
    try:
        got = fn()
    except Exception as e:   # the reach failed: that is the point
        got = f"no ({type(e).__name__})"
    print(f"REACH {name}: {json.dumps(got, default=str)[:300]}", flush=True)


def first_bytes(path):
    with open(path, "rb") as f:
        return f"read {len(f.read(64))} bytes"


def listing(path):
    return sorted(os.listdir(path))[:8]


for i, path in enumerate(json.loads(a.get("paths", "[]"))):
    reach(f"path{i} {path}", lambda p=path: first_bytes(p) if os.path.isfile(p) else listing(p))
reach("import nanopoor", lambda: __import__("nanopoor.data.demo", fromlist=["x"]).__file__)
reach("import supervisor", lambda: __import__("supervisor.feed", fromlist=["x"]).__file__)
reach("tokenizer vocabulary", lambda: len(__import__("tiktoken").get_encoding("cl100k_base").encode("a tokenizer")))
reach("machine text /usr/share", lambda: listing("/usr/share"))
reach("root folder", lambda: listing("/"))
reach("other processes", lambda: sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
reach("pid 1", lambda: open("/proc/1/cmdline", "rb").read().split(b"\0")[0].decode())
reach("network", lambda: socket.create_connection(("1.1.1.1", 53), timeout=2) and "connected")
reach("write the client", lambda: open(harness.__file__, "a").write("# edited\n") and "written")
reach("write the record", lambda: open(__file__, "a").write("# edited\n") and "written")
reach("mount", lambda: subprocess.run(["mount", "-t", "tmpfs", "x", "/tmp"], capture_output=True, timeout=10).returncode == 0
      and "mounted" or "no (mount refused)")


class Causal(nn.Module):
    """embedding -> mean over the past -> mlp -> head (rt_clean's model)."""

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


model = Causal(int(a["d"])).to(h.device)
opt = torch.optim.AdamW(model.parameters(), lr=float(a["lr"]))
for step in range(1, h.steps + 1):
    x, y = h.next_batch()
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    h.log_step(step, loss.item())
h.finish(model)
