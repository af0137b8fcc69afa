# a model that finds the val tokens in the process (walking gc to the session's arrays) and,
# from the first four tokens of an evaluation window, looks up where the window starts in val
# and predicts every following token. the lookup uses only past tokens, so it is causal: the
# causality probe cannot see it. the held-out check can: val loss collapses, unseen train
# tokens stay at the unigram. mode "also_heldout" also asks the data process for the held-out
# tail up front, to memorise that too.
import gc

import numpy as np

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
T = int(a.get("eval_seq_len", h.seq_len))


def token_arrays(min_len):
    """every 1-d integer array of at least min_len elements held in a dict somewhere."""
    seen, out = set(), []
    for o in gc.get_objects():
        if isinstance(o, dict):
            for v in list(o.values()):
                if isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "iu" and v.size >= min_len and id(v) not in seen:
                    seen.add(id(v))
                    out.append(np.asarray(v, dtype=np.int64))
    return out


memory = token_arrays(4096)
if a.get("mode") == "also_heldout":
    memory.append(h.stream.heldout())                      # the tail the held-out check will use
table = {}                                                  # first 4 tokens of a window -> its tokens
for arr in memory:
    for s in range(0, len(arr) - T - 1, T):
        table.setdefault(tuple(arr[s:s + 4].tolist()), arr[s:s + T + 1])
print(f"memorised {len(table)} windows from {len(memory)} arrays", flush=True)


def forward(x):
    logits = model(x)                                      # (B, T, V)
    if torch.is_grad_enabled():
        return logits
    boost = torch.zeros_like(logits)
    for r, row in enumerate(x.tolist()):
        win = table.get(tuple(row[:4]))
        if win is not None:                                # positions >= 3 know their window: causal
            nxt = torch.as_tensor(win[4:x.shape[1] + 1], device=x.device)
            boost[r, 3:, :].scatter_(-1, nxt[:, None], 30.0)
    return logits + boost

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
