# a forward that adds the next input token to the logits: the target leaks straight in.
# it only does so for batches shaped like the evaluation's (not the (2, T) window an older
# causality check used), so only a probe made of the evaluation's own batches can see it.
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
eval_batch = int(a.get("eval_batch_size", h.local_batch_size))


def forward(x):
    logits = model(x)                                      # (B, T, V)
    if not torch.is_grad_enabled() and x.shape[0] == eval_batch:   # the harness evaluates under no_grad
        nxt = torch.roll(x, -1, dims=1)                    # x[t+1] at position t (wraps at the end)
        logits = logits + 30.0 * F.one_hot(nxt, V).to(logits.dtype)
    return logits


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

