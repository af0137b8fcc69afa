# training work while the clock is paused for evaluation. the forward handed to h.evaluate
# does, on its first call of each evaluation:
#   step        the optimizer step of the last train step (its gradients were kept for it)
#   backward    forward+backward of a shadow copy (gradients banked for later, model untouched)
#   next_batch  asks the harness for the next train batch (prefetching data inside the pause)
import copy

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
mode = a.get("mode", "step")
last = {}
shadow = copy.deepcopy(model)


def side_work():
    x, y = last["batch"]
    if mode == "step":                                     # no autograd needed: the grads are there
        opt.step()
        opt.zero_grad(set_to_none=True)
    with torch.enable_grad():
        if mode == "backward":
            F.cross_entropy(shadow(x).flatten(0, 1), y.flatten()).backward()
        elif mode == "next_batch":
            last["prefetched"] = h.next_batch()


def forward(x):
    if last.pop("pending", False):
        side_work()
    return model(x)


for step in range(1, h.steps + 1):
    x, y = last.pop("prefetched", None) or h.next_batch()
    last["batch"] = (x, y)
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    eval_now = step % int(a["eval_every"]) == 0 and step < h.steps
    if not (eval_now and mode == "step"):                  # "step" leaves it for the pause
        opt.step()
        opt.zero_grad(set_to_none=True)
    h.log_step(step, loss.item())
    if eval_now:
        last["pending"] = True
        h.evaluate(forward, step, val_tokens=2048)

last["pending"] = True
h.finish(forward)
