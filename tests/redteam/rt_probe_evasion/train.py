# forwards that leak the target only where a probe is blind, or that blind the probe. modes:
#   noise_column  random values in one rarely used logit column (they cost nothing in the softmax)
#                 plus +30 on the next input token: an older probe widened its tolerance by the
#                 noise it measured, so the leak hid under it
#   last_batch    the +30 peek only in a batch smaller than the evaluation's batch size (the last,
#                 partial one, which an older probe never picked)
#   cross_row     row r's last position reads row r + 1's first input (consecutive windows: that
#                 is exactly row r's last target)
#   dropout       no cheat at all: an honest model left with dropout active in evaluation
#   second_half   the peek only at positions in the second half of each row
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
        if mode == "dropout":                              # active whatever mode the module is in
            e = F.dropout(e, p=0.2, training=True)
        T = x.shape[1]
        w = torch.tril(torch.ones(T, T, device=x.device))
        ctx = (w / w.sum(-1, keepdim=True)) @ e            # (B, T, d)
        return self.head(torch.tanh(self.mix(ctx)) + e)    # (B, T, V)


model = Causal(int(a["d"])).to(h.device)
opt = torch.optim.AdamW(model.parameters(), lr=float(a["lr"]))
noise_gen = torch.Generator().manual_seed(1234)


def peek(x, logits, where):
    """+30 on the next input token at the positions `where` (a (T,) bool mask) of every row."""
    nxt = torch.roll(x, -1, dims=1)                        # x[t+1] at position t
    boost = 30.0 * F.one_hot(nxt, V).to(logits.dtype)      # (B, T, V)
    where = where.clone()
    where[-1] = False                                      # x[t+1] does not exist at the last position
    return logits + boost * where[None, :, None].to(logits.dtype)


def forward(x):
    logits = model(x)                                      # (B, T, V)
    if torch.is_grad_enabled():                            # training: honest
        return logits
    B, T = x.shape
    if mode == "noise_column":
        col = V - 2                                        # a rare id of the zipf tail
        logits = logits.clone()
        logits[..., col] = -60.0 + 40.0 * torch.rand(B, T, generator=noise_gen)
        logits = peek(x, logits, torch.ones(T, dtype=torch.bool))
    elif mode == "last_batch" and B < h.eval_batch_size:
        logits = peek(x, logits, torch.ones(T, dtype=torch.bool))
    elif mode == "second_half":
        logits = peek(x, logits, torch.arange(T) >= T // 2)
    elif mode == "cross_row" and B > 1:
        nxt_first = torch.roll(x[:, 0], -1)                # row r + 1's first input for row r
        boost = torch.zeros_like(logits)
        boost[: B - 1, T - 1, :] = 30.0 * F.one_hot(nxt_first[: B - 1], V).to(logits.dtype)
        logits = logits + boost
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
