# reaches the dataset's bytes where python's audit hook does not look. modes (comma-separated):
#   dir_fd          os.open of the shard relative to a descriptor of the dataset folder's parent
#   chdir           chdir to the parent, then a relative open
#   link            a hard link to the shard made at run time (os.link), then opened
#   link_child      the hard link made by a child process (the path base64-encoded in its
#                   arguments), then opened by this process through the link's own name
#   child_b64       a child python that opens the shard itself, the path base64-encoded
#   proc_mem        reads the data process's memory (/proc/<pid>/mem) mid-training and dumps
#                   every run of token-like values to args["dump"] (the test looks for train
#                   tokens the stream never served)
#   proc_mem_claim  during the claim's evaluation, finds the batch being scored in the data
#                   process's memory and boosts every following token (a causal prefix lookup)
# refusals are printed and swallowed; the record then trains honestly.
import base64
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import torch
import torch.nn as nn
import torch.nn.functional as F

import harness

h = harness.session()
a = h.args
V = (h.vocab_size + 63) // 64 * 64
modes = a["mode"].split(",")
data = Path(h.config["data_dir"])
shard = data / "train_000000.bin"
b64 = base64.b64encode(str(shard).encode()).decode()


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


def attempt(name, fn):
    try:
        got = fn()
        print(f"{name}: read {len(got)} bytes", flush=True)
    except PermissionError as e:
        print(f"refused: {name}: {e}", flush=True)


def read_dir_fd():
    fd = os.open(data.parent, os.O_RDONLY | os.O_DIRECTORY)
    f = os.open(f"{data.name}/{shard.name}", os.O_RDONLY, dir_fd=fd)
    return os.read(f, 4096)


def read_chdir():
    os.chdir(data.parent)
    with open(f"{data.name}/{shard.name}", "rb") as f:
        return f.read(4096)


def read_link():
    alias = data.parent / "alias.bin"
    os.link(shard, alias)
    with open(alias, "rb") as f:
        return f.read(4096)


def read_link_child():
    alias = data.parent / "alias_child.bin"
    code = f"import base64, os; os.link(base64.b64decode('{b64}').decode(), {str(alias)!r})"
    subprocess.run([sys.executable, "-c", code], check=True)
    with open(alias, "rb") as f:
        return f.read(4096)


def read_child():
    code = f"import base64, sys; sys.stdout.buffer.write(open(base64.b64decode('{b64}'), 'rb').read())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout


MEM_READER = """
import struct, sys
pid, out = sys.argv[1], sys.argv[2]
with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem, open(out, "wb") as f:
    for line in maps:
        span, perms = line.split()[:2]
        lo, hi = (int(v, 16) for v in span.split("-"))
        if "r" not in perms or hi - lo > 1 << 28 or "[vvar]" in line or "[vsyscall]" in line:
            continue
        try:
            mem.seek(lo)
            blob = mem.read(hi - lo)
        except OSError:
            continue
        f.write(struct.pack("<Q", len(blob)) + blob)
"""


def data_process_memory() -> list[bytes]:
    """every readable region of the data process (a child of this one: same user, readable). the
    harness refuses this process opening /proc/<pid>/mem, so a child process (outside the audit
    hook) reads it; "proc_mem_direct" tries the direct open once, to be refused."""
    if "proc_mem_direct" in modes:
        try:
            open(f"/proc/{h.stream.pid}/mem", "rb", 0).close()
            print("proc_mem_direct: opened", flush=True)
        except PermissionError as e:
            print(f"proc_mem_direct: refused: {e}", flush=True)
    import struct
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".mem") as tmp:
        subprocess.run([sys.executable, "-c", MEM_READER, str(h.stream.pid), tmp.name], check=True)
        raw, out, off = Path(tmp.name).read_bytes(), [], 0
    while off < len(raw):
        (n,) = struct.unpack_from("<Q", raw, off)
        out.append(raw[off + 8:off + 8 + n])
        off += 8 + n
    return out


def token_runs(blobs, min_len=64):
    """runs of at least min_len values < vocab_size with at least 16 distinct ids, per dtype."""
    runs = []
    for blob in blobs:
        for dt in (np.uint16, np.int32, np.int64):
            v = np.frombuffer(blob[: len(blob) // 8 * 8], dtype=dt)
            ok = np.concatenate([[False], (v >= 0) & (v < h.vocab_size), [False]])
            edges = np.flatnonzero(np.diff(ok.astype(np.int8)))
            for s, e in zip(edges[::2], edges[1::2]):
                if e - s >= min_len and len(np.unique(v[s:e][:4096])) >= 16:
                    runs.append(v[s:e].astype(np.int64))
    return runs


table = {}


def lookup_in_data_process(row):
    """find `row` (the first window of a batch) in the data process's memory; remember every
    window of the array it sits in, by its first four tokens."""
    key, best = np.asarray(row[:8]), np.zeros(0, np.int64)
    for blob in data_process_memory():
        for dt in (np.uint16, np.int32, np.int64):
            v = np.frombuffer(blob[: len(blob) // 8 * 8], dtype=dt)
            for i in np.flatnonzero(v[: len(v) - 8] == key[0])[:100000]:
                if np.array_equal(v[i:i + 8], key):       # the longest run of token ids from here
                    tail = v[i:i + (1 << 16)]
                    bad = np.flatnonzero(tail >= h.vocab_size)
                    arr = tail[: bad[0] if len(bad) else len(tail)]
                    if len(arr) > len(best):
                        best = arr.astype(np.int64)
    T = len(row)
    for s in range(0, len(best) - T, T):
        table.setdefault(tuple(best[s:s + 4].tolist()), best[s:s + T + 1])
    print(f"found a run of {len(best)} tokens in the data process", flush=True)


model = Causal(int(a["d"])).to(h.device)
opt = torch.optim.AdamW(model.parameters(), lr=float(a["lr"]))
claiming = False
looked = {"n": 0}


def forward(x):
    logits = model(x)
    if not (claiming and "proc_mem_claim" in modes):
        return logits
    rows = x.tolist()
    if not any(tuple(r[:4]) in table for r in rows) and looked["n"] < 2:   # a new evaluation stream: look it up
        looked["n"] += 1                                   # (once for val, once for the check: a search is slow)
        lookup_in_data_process(rows[0])
    boost = torch.zeros_like(logits)
    for r, row in enumerate(rows):
        win = table.get(tuple(row[:4]))
        if win is not None:
            nxt = torch.as_tensor(win[4:x.shape[1] + 1])
            boost[r, 3:3 + len(nxt), :].scatter_(-1, nxt[:, None], 30.0)
    return logits + boost


for mode in modes:
    fn = {"dir_fd": read_dir_fd, "chdir": read_chdir, "link": read_link, "link_child": read_link_child,
          "child_b64": read_child}.get(mode)
    if fn is not None:
        attempt(mode, fn)

for step in range(1, h.steps + 1):
    x, y = h.next_batch()
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    h.log_step(step, loss.item())
    if step % int(a["eval_every"]) == 0 and step < h.steps:
        h.evaluate(model, step, val_tokens=2048)

if "proc_mem" in modes:
    runs = token_runs(data_process_memory())
    np.save(a["dump"], np.concatenate([np.concatenate([r, [-1]]) for r in runs]) if runs else np.zeros(0, np.int64))
    print(f"proc_mem: {len(runs)} runs, {sum(map(len, runs))} values, longest {max(map(len, runs), default=0)}", flush=True)
claiming = True
h.finish(forward)
