# a record that goes wrong on its own. modes:
#   crash         raises at step 2
#   hang          sleeps forever at step 2 (the runner's timeout kills it)
#   hang_no_term  ignores SIGTERM first, then sleeps (the runner must escalate to SIGKILL)
#   nan_loss      reports a nan train loss
#   nan_logits    its forward returns nan logits at the final evaluation
import signal
import time

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


mode = a.get("mode", "crash")
model = Causal(int(a["d"])).to(h.device)
opt = torch.optim.AdamW(model.parameters(), lr=float(a["lr"]))
if mode == "hang_no_term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def forward(x):
    logits = model(x)
    return logits * float("nan") if mode == "nan_logits" else logits


for step in range(1, h.steps + 1):
    x, y = h.next_batch()
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if step == 2 and mode == "crash":
        raise RuntimeError("deliberate crash")
    if step == 2 and mode.startswith("hang"):
        time.sleep(3600)
    h.log_step(step, float("nan") if (mode == "nan_loss" and step == 2) else loss.item())

h.finish(forward)
