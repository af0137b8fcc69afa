# trains extra_steps more steps than declared, catching the harness's refusal each time and
# training on the last batch again. mode "erase" also empties the harness's in-memory list
# of violations afterwards.
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


model = Causal(int(a["d"])).to(h.device)
opt = torch.optim.AdamW(model.parameters(), lr=float(a["lr"]))
forward = model
x = y = None
for step in range(1, h.steps + int(a["extra_steps"]) + 1):
    try:
        x, y = h.next_batch()
    except Exception as e:                                 # "budget: ..." -- keep going anyway
        print(f"refused: {e}", flush=True)
    loss = F.cross_entropy(forward(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    h.log_step(min(step, h.steps), loss.item())

if a.get("mode") == "erase":
    import harness.integrity
    harness.integrity._state["violations"].clear()
h.finish(forward)
