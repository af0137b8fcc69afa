# what the record is shown, remembered and looked up by prefix: from the first four tokens of
# an evaluation window, find where those tokens were seen and boost every following token. the
# lookup reads only tokens the record was shown, so it is causal. modes:
#   gc           (default) at every evaluation call, walk gc for 1-d integer arrays and tensors
#                (whatever the harness holds: the val set once, now only the batches shown so far)
#   memo         remember the first call of each evaluation batch and answer later calls whose
#                rows start the same from it (no gc, no harness internals)
#   progress     remember every window shown in progress evals (the whole progress half each step) and look
#                those up at the claim
#   check_early  read the held-out check's stream mid-training, to memorise it
#   check_late   read the first held-out batch after the last train step, before h.finish
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
T = h.eval_seq_len
mode = a.get("mode", "gc")
table = {}                                                  # first 4 tokens of a window -> its tokens
memo = {}


def remember(arr):
    """windows of T + 1 tokens cut at every multiple of T of a 1-d token array."""
    arr = np.asarray(arr, dtype=np.int64)
    for s in range(0, len(arr) - 4, T):
        table.setdefault(tuple(arr[s:s + 4].tolist()), arr[s:s + T + 1])


def walk_gc():
    """every 1-d integer array or tensor of at least one window alive in the process."""
    for o in gc.get_objects():
        if isinstance(o, torch.Tensor) and o.dim() == 1 and not o.is_floating_point() and o.numel() > T:
            remember(o.cpu().numpy())
        elif isinstance(o, dict):
            for v in list(o.values()):
                if isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "iu" and v.size > T:
                    remember(v)


def boost_from(x, rows_of):
    """+30 on each remembered next token, from position 3 (where the four-token key is known)."""
    boost = torch.zeros(x.shape[0], x.shape[1], V, device=x.device)
    for r, row in enumerate(x.tolist()):
        win = rows_of(r, row)
        if win is not None:
            nxt = torch.as_tensor(np.asarray(win[4:x.shape[1] + 1]), device=x.device)
            boost[r, 3:3 + len(nxt), :].scatter_(-1, nxt[:, None], 30.0)
    return boost


def forward(x):
    logits = model(x)                                      # (B, T, V)
    if torch.is_grad_enabled():
        return logits
    if mode == "gc" and finishing:
        walk_gc()
    if mode == "memo":
        rows = x.tolist()
        keys = [(r, row[0]) for r, row in enumerate(rows)]
        if not any(k in memo for k in keys):               # no row starts like the last batch's: a new batch
            memo.clear()
            memo.update(zip(keys, rows))
        return logits + boost_from(x, lambda r, row: memo.get((r, row[0])))
    if mode == "progress" and not finishing:
        for row in x.tolist():
            shown.append(row)
    return logits + boost_from(x, lambda r, row: table.get(tuple(row[:4])))


finishing = False
shown: list = []
for step in range(1, h.steps + 1):
    if mode == "check_early" and step == 3:
        try:
            held = h.stream.eval_inputs("check")
            print(f"read {held.size} held-out tokens mid-training", flush=True)
        except Exception as e:
            print(f"refused: {e}", flush=True)
    x, y = h.next_batch()
    loss = F.cross_entropy(forward(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    h.log_step(step, loss.item())
    if mode == "progress":
        h.evaluate(forward, step)                          # the whole progress half, every step
    elif step % int(a["eval_every"]) == 0 and step < h.steps:
        h.evaluate(forward, step, val_tokens=2048)

if mode == "check_late":
    held = np.concatenate([h.stream.eval_inputs("check"), h.stream.eval_targets("check")[:, -1:]], 1)
    remember(held.reshape(-1))
if mode == "progress":
    remember(np.asarray(shown).reshape(-1))
print(f"memorised {len(table)} windows before the claim", flush=True)
finishing = True
h.finish(forward)
