# work off the clock, around the claim: the red team's class 2. rt_clean's training, then:
#   claim_copy      the claim's first forward call (no autograd: the harness evaluating) trains a
#                   copy of the model for args.epochs more epochs over every batch it was served,
#                   and every call is answered by the copy: training the clock never saw
#   after_handover  the weights are trained on after the client has written them and before the
#                   forward is exported (the client's export step, wrapped)
#   fake_handover   the client is made to say "handed over" after the first batches (the clock
#                   stops), the rest of the budget is fetched, and the training happens after
import torch
import torch.nn as nn
import torch.nn.functional as F

import harness

h = harness.session()
a = h.args
mode = a.get("mode", "claim_copy")
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
served = []   # every batch the record was given


def train_on(m, o, x, y):
    F.cross_entropy(m(x).flatten(0, 1), y.flatten()).backward()
    o.step()
    o.zero_grad(set_to_none=True)


if mode == "fake_handover":
    # the budget fetched at once, then a handover said before any training
    for _ in range(h.steps):
        served.append(h.next_batch())
    from harness import handover as ho

    folder = __import__("pathlib").Path(h.config["handover_dir"])
    early = ho.claim_model(model, [model], [])
    ho.write_weights(early, folder)
    h.tell("handover", bytes=0, tensors=0, modules=1, write_ms=0.0)
    for step, (x, y) in enumerate(served, 1):
        train_on(model, opt, x, y)
        h.log_step(step, 0.0)
    # the trained weights written over the early ones and the forward exported, without a second
    # "handed over" (which the supervisor would refuse)
    ho.write_weights(early, folder)
    ho.export_forward(early, h, folder)
    h.tell("exported", path="forward.pt2", export_ms=0.0)
    h._finished = True
    raise SystemExit(0)
else:
    for step in range(1, h.steps + 1):
        x, y = h.next_batch()
        served.append((x, y))
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        h.log_step(step, loss.item())

trained = {}


def forward(x):
    if mode == "claim_copy" and not torch.is_grad_enabled():
        if "copy" not in trained:   # the claim's first call: more epochs over what was served
            c = Causal(int(a["d"])).to(x.device)
            c.load_state_dict(model.state_dict())   # fresh parameters that can train, wherever this runs
            o = torch.optim.AdamW(c.parameters(), lr=float(a["lr"]))
            with torch.enable_grad():
                for _ in range(int(a.get("epochs", 20))):
                    for xs, ys in served:
                        train_on(c, o, xs, ys)
            trained["copy"] = c
            print("CLAIM_COPY: trained a copy inside the claim's evaluation", flush=True)
        return trained["copy"](x)
    return model(x)


if mode == "after_handover":
    from harness import handover as ho

    real_export = ho.export_forward

    def export_after_training(m, sess, folder):
        for _ in range(int(a.get("epochs", 20))):   # the weights are written: the clock has stopped
            for xs, ys in served:
                train_on(model, opt, xs, ys)
        print("AFTER_HANDOVER: trained on after the weights were written", flush=True)
        return real_export(m, sess, folder)

    ho.export_forward = export_after_training
h.finish(forward)
