# training inside the untimed warm-up. modes:
#   no_reset        h.warmup(..., reset=False) and real optimizer steps on val tokens
#   shadow_opt      a shadow copy trained with its own optimizer inside the warm-up,
#                   copied into the model after the first (timed) batch
#   shadow_manual   a shadow trained by hand (no optimizer, grads dropped), copied in
#                   right after the warm-up, before the first batch
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
forward = model
mode = a.get("mode", "no_reset")
# warm-up data: any tokens will do (the cheat is the training, not the data)
val = torch.randint(0, h.vocab_size, (8, h.seq_len + 1), generator=torch.Generator().manual_seed(0)).to(h.device)
shadow = None

with h.warmup(model, opt, reset=(mode != "no_reset")):
    if mode == "no_reset":
        for _ in range(20):
            F.cross_entropy(model(val[:, :-1]).flatten(0, 1), val[:, 1:].flatten()).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        shadow = copy.deepcopy(model)
        shadow_opt = torch.optim.AdamW(shadow.parameters(), lr=0.05) if mode == "shadow_opt" else None
        for _ in range(20):
            loss = F.cross_entropy(shadow(val[:, :-1]).flatten(0, 1), val[:, 1:].flatten())
            loss.backward()
            if shadow_opt is not None:
                shadow_opt.step()
                shadow_opt.zero_grad(set_to_none=True)
            else:
                with torch.no_grad():
                    for p in shadow.parameters():
                        p -= 0.5 * p.grad
                        p.grad = None

if mode == "shadow_manual":
    model.load_state_dict(shadow.state_dict())

for step in range(1, h.steps + 1):
    x, y = h.next_batch()
    if step == 1 and mode == "shadow_opt":
        model.load_state_dict(shadow.state_dict())
    loss = F.cross_entropy(forward(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    h.log_step(step, loss.item())

h.finish(forward)
