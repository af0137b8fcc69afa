# knowledge from outside the dataset, gathered before the first batch, from the project's own
# code: the red team's class 1. the record finds the project's tree from where the harness is
# installed and imports the dataset builder the tests use (tests/redteam/test_redteam.py). modes:
#   generate    builds a fresh dataset of the same kind (another seed) and pretrains on it for
#               args.pretrain_steps steps before its first batch: knowledge no budget counts
#   regenerate  rebuilds the run's own dataset byte for byte (seed 0) and answers every row of the
#               val set and of the held-out tail from it: each row is found by its first four
#               tokens and the tokens that follow it in the stream get +30 (causal in the probe's
#               sense: a row's prefix decides, so cutting its suffix moves nothing before the cut)
# where the project's code is out of reach it says so and runs as rt_clean does.
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import harness

h = harness.session()
a = h.args
mode = a.get("mode", "generate")
V = (h.vocab_size + 63) // 64 * 64


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


def project_builder():
    """the tests' dataset builder, imported from the project's tree beside the harness."""
    root = Path(harness.__file__).resolve().parents[1]
    sys.path[:0] = [str(root), str(root / "tests"), str(root / "tests" / "redteam")]
    import test_redteam

    return test_redteam.make_redteam_dataset


def stream_of(folder: Path, split: str) -> np.ndarray:
    import json

    manifest = json.loads((folder / "manifest.json").read_text())
    parts = [np.fromfile(folder / s["file"], dtype=np.uint16 if manifest["vocab_size"] <= 65536 else np.uint32, offset=256)
             for s in manifest[split]]
    return np.concatenate(parts).astype(np.int64)


lookup = None
try:
    build = project_builder()
    tmp = Path(tempfile.mkdtemp())
    if mode == "generate":
        extra = stream_of(build(tmp / "fresh", seed=12345), "train")
        g = torch.Generator().manual_seed(1)
        for _ in range(int(a.get("pretrain_steps", 300))):   # before the first batch: no clock runs
            i = torch.randint(0, len(extra) - h.seq_len - 1, (h.local_batch_size,), generator=g)
            win = torch.stack([torch.from_numpy(extra[j:j + h.seq_len + 1]) for j in i.tolist()]).to(h.device)
            F.cross_entropy(model(win[:, :-1]).flatten(0, 1), win[:, 1:].flatten()).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        print(f"OUTSIDE: pretrained on {len(extra):,} tokens of a fresh dataset before the first batch", flush=True)
    else:
        same = build(tmp / "same", seed=0)
        stream = np.concatenate([stream_of(same, "val"), stream_of(same, "train")])
        lookup = {}
        for i in range(len(stream) - 4):
            lookup.setdefault(stream[i:i + 4].tobytes(), i)
        print(f"OUTSIDE: rebuilt the run's dataset, {len(stream):,} tokens, for a lookup", flush=True)
except Exception as e:
    print(f"OUTSIDE: the project's code is out of reach ({type(e).__name__})", flush=True)


def forward(x):
    logits = model(x)                                      # (B, T, V)
    if lookup is None or torch.is_grad_enabled():
        return logits
    boost = torch.zeros_like(logits)
    for r, row in enumerate(x.cpu().numpy()):
        at = lookup.get(row[:4].astype(np.int64).tobytes())
        if at is not None:
            nxt = torch.from_numpy(stream[at + 1: at + 1 + x.shape[1]]).to(x.device)
            boost[r, torch.arange(len(nxt)), nxt] = 30.0
    return logits + boost


for step in range(1, h.steps + 1):
    x, y = h.next_batch()
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    h.log_step(step, loss.item())
h.finish(forward)
