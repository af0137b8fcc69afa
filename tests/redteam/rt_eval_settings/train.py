# changes how it is evaluated after the config was frozen. modes:
#   args_write     h.args["eval_batch_size"] = 1 (a batch of one: no cross-row probe calls)
#   plan_progress  rebinds h._eval_plan to batches of one for its progress evals, and puts it back
#                  before h.finish (cheaper progress evals, a claim that looks untouched)
#   plan_all       rebinds h._eval_plan for the whole run, the claim included
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


if mode == "args_write":
    h.args["eval_batch_size"] = 1
declared = h._eval_plan
if mode in ("plan_progress", "plan_all"):
    h._eval_plan = (declared[0], 1)

model = Causal(int(a["d"])).to(h.device)
opt = torch.optim.AdamW(model.parameters(), lr=float(a["lr"]))
for step in range(1, h.steps + 1):
    x, y = h.next_batch()
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    h.log_step(step, loss.item())
    if step % int(a["eval_every"]) == 0 and step < h.steps:
        h.evaluate(model, step, val_tokens=2048)

if mode == "plan_progress":
    h._eval_plan = declared
h.finish(model)
