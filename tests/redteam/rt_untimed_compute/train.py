# compute before the clock starts. modes:
#   pretrain    no warm-up: before its first next_batch, walks gc for any integer arrays or
#               tensors that could be tokens (val, train, the tail) and trains 120 steps on them
#   eval_first  calls h.evaluate before the first batch, to be shown progress tokens while no
#               clock runs, and trains on what it was shown
import gc

import numpy as np

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
T = h.seq_len


def token_like(v):
    """a 1-d integer array/tensor of at least a few windows, every value a token id."""
    if isinstance(v, torch.Tensor) and not v.is_floating_point() and v.dim() == 1 and v.numel() > 4 * T:
        v = v.cpu().numpy()
    if isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "iu" and v.size > 4 * T:
        return v if 0 <= v.min() and v.max() < h.vocab_size else None
    return None


def found_tokens():
    out, seen = [], set()
    for o in gc.get_objects():
        for v in (list(o.values()) if isinstance(o, dict) else [o]):
            t = token_like(v)
            if t is not None and id(v) not in seen:
                seen.add(id(v))
                out.append(np.asarray(t, dtype=np.int64))
    return out


def train_on(tokens, steps):
    windows = torch.as_tensor(tokens[: (len(tokens) - 1) // T * T + 1])
    n = (len(windows) - 1) // T
    for i in range(steps):
        s = (i % n) * T
        w = windows[s:s + T + 1][None]
        F.cross_entropy(model(w[:, :-1]).flatten(0, 1), w[0, 1:]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


shown = []
if mode == "pretrain":
    arrays = found_tokens()
    print(f"found {len(arrays)} token arrays ({sum(len(t) for t in arrays)} tokens) before the clock", flush=True)
    if arrays:
        train_on(np.concatenate(arrays), 120)
elif mode == "eval_first":
    h.evaluate(lambda x: shown.append(x.flatten().clone()) or model(x), 0)
    train_on(torch.cat(shown).numpy(), 120)

for step in range(1, h.steps + 1):
    x, y = h.next_batch()
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    h.log_step(step, loss.item())

h.finish(model)
