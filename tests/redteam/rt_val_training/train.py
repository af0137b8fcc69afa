# trains on the validation tokens: next to each real train step, a bigram table gets a few
# full-batch steps on the val split. the session no longer holds val, so the record reads it
# from the data process's claim stream itself, before h.finish; the stream serves each batch
# once, so the claim's evaluation then finds its tokens taken.
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
bigram = nn.Embedding(V, V).to(h.device)                 # logits of the next token given this one
nn.init.zeros_(bigram.weight)
opt = torch.optim.AdamW(list(model.parameters()) + list(bigram.parameters()), lr=0.1)


def read_val():
    """the val set, read from the data process's claim stream batch by batch before the claim."""
    rows = []
    while True:
        x = h.stream.eval_inputs("val")
        if not len(x):
            break
        y = h.stream.eval_targets("val")
        rows.append(torch.cat([torch.as_tensor(x), torch.as_tensor(y[:, -1:])], 1))   # (B, T + 1)
    return torch.cat(rows).flatten().to(h.device)


val = read_val()
print(f"read {val.numel()} val tokens ahead of the claim", flush=True)


def forward(x):
    return model(x) + bigram(x)


for step in range(1, h.steps + 1):
    x, y = h.next_batch()
    loss = F.cross_entropy(forward(x).flatten(0, 1), y.flatten())
    for _ in range(20):                                    # the cheat: memorise val's bigrams
        loss = loss + F.cross_entropy(bigram(val[:-1]), val[1:])
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    h.log_step(step, loss.item())

h.finish(forward)
