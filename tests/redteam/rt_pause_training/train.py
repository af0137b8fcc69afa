# the work of each train step done while the clock is paused: after every step's batch comes a
# progress eval of one window (33 tokens), and its forward does the step's forward and backward
# (gradients banked with autograd.grad, so no parameter or .grad moves inside the pause); the
# optimizer step after the pause is all the clock sees. modes:
#   shadow_hooks  inside two nested saved_tensors_hooks (they shadow any hook the harness pushed
#                 to see tensors saved for backward)
#   grad_modes    inside torch.inference_mode(False) and torch.enable_grad()
#   thread        on a worker thread, joined before the forward returns (torch counts autograd
#                 nodes per thread)
#   burn          no autograd at all: ~0.5 s of matmuls in each pause (work the clock never sees)
import threading
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import harness

h = harness.session()
a = h.args
V = (h.vocab_size + 63) // 64 * 64
mode = a["mode"]


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
params = list(model.parameters())
bank = {}


def step_grads(x, y):
    """the train step's forward and backward; gradients kept aside, the model untouched."""
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    bank["grads"] = torch.autograd.grad(loss, params)
    bank["loss"] = loss.item()


def side_work():
    x, y = bank.pop("batch")
    if mode == "shadow_hooks":
        keep = lambda t: t                                 # noqa: E731
        with torch.autograd.graph.saved_tensors_hooks(keep, keep):
            with torch.autograd.graph.saved_tensors_hooks(keep, keep), torch.enable_grad():
                step_grads(x, y)
    elif mode == "grad_modes":
        with torch.inference_mode(False), torch.enable_grad():
            step_grads(x, y)
    elif mode == "thread":
        def work():
            with torch.enable_grad():
                step_grads(x, y)
        t = threading.Thread(target=work)
        t.start()
        t.join()
    elif mode == "burn":
        m = torch.randn(256, 256)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.5:
            m = torch.tanh(m @ m)


def forward(x):
    if "batch" in bank:                                    # the first call of the pause
        side_work()
    return model(x)


for step in range(1, h.steps + 1):
    bank["batch"] = h.next_batch()
    if mode == "burn":                                     # an honest step; the pause only burns
        x, y = bank["batch"]
        with torch.enable_grad():
            step_grads(x, y)
    h.evaluate(forward, step, val_tokens=33)               # one window: the pause is the step
    for p, g in zip(params, bank.pop("grads")):
        p.grad = g
    opt.step()
    opt.zero_grad(set_to_none=True)
    h.log_step(step, bank["loss"])

h.finish(model)
