# training hidden in the progress evaluations, each made to look like a compiling one: the red
# team's class 2b. after every eval_every steps the record asks for a progress evaluation; its
# forward, on the first call of each, trains args.hidden_steps more steps on the batches it was
# served, and calls torch.compile(backend="eager") on a new function, so that torch's compile
# counter moves inside the pause (harness 0.3 let the first compiling pauses off its charge). the
# record prints HIDDEN_MS, the wall time of its hidden work, for the test.
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import harness

h = harness.session()
a = h.args
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
served = []
hidden = {"ms": 0.0, "pending": False}


def forward(x):
    if hidden["pending"]:   # the first call of a progress evaluation
        hidden["pending"] = False
        t0 = time.perf_counter()
        torch.compile(lambda t: t * 1.0, backend="eager")(x.float())   # a fresh compile: the pause "compiles"
        with torch.enable_grad():
            for i in range(int(a.get("hidden_steps", 40))):
                xs, ys = served[i % len(served)]
                F.cross_entropy(model(xs).flatten(0, 1), ys.flatten()).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
        hidden["ms"] += (time.perf_counter() - t0) * 1000
    return model(x)


for step in range(1, h.steps + 1):
    x, y = h.next_batch()
    served.append((x, y))
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    h.log_step(step, loss.item())
    if step % int(a["eval_every"]) == 0 and step < h.steps:
        hidden["pending"] = True
        h.evaluate(forward, step, val_tokens=64)
print(f"HIDDEN_MS {hidden['ms']:.1f}", flush=True)
h.finish(model)
