# an honest loop; the cheat is in record.toml: the smoke scale trains on windows longer than
# half the never-served tail, the full scale evaluates on them (the held-out check would read
# fewer than its minimum of windows, so it could never fail)
import torch
import torch.nn as nn
import torch.nn.functional as F

import harness

h = harness.session()
a = h.args
V = (h.vocab_size + 63) // 64 * 64


class Causal(nn.Module):
    """embedding -> mean over the past -> mlp -> head."""

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

if a.get("warmup"):
    with h.warmup(model, opt):  # untimed: one step on dummy tokens; the harness restores both
        xw = torch.randint(0, h.vocab_size, (h.local_batch_size, h.seq_len), device=h.device)
        F.cross_entropy(model(xw).flatten(0, 1), xw.flatten()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

for step in range(1, h.steps + 1):
    x, y = h.next_batch()
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    h.log_step(step, loss.item())
    if step % int(a["eval_every"]) == 0 and step < h.steps:
        h.evaluate(model, step, val_tokens=2048)

h.finish(model)
