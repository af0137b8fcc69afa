# edits the installed harness on disk: a comment appended to the harness package's __init__.py (a
# real attack would change what the next run's harness does, or what this process re-imports).
from pathlib import Path

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


with open(Path(harness.__file__), "a") as f:
    f.write("\n# edited by a record\n")

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
