# replaces what the session does by adding names, not rebinding them: the code check used to
# compare only the names the snapshot held. modes (comma-separated):
#   class_warmup     under --as-t4, sets warmup on T4Session (which inherits Session's): a warm-up
#                    with no reset, so the model trains untimed in it (warmup_steps steps)
#   instance_finish  h.finish = a finish that never asks the data process for val and claims a loss
#   instance_eval    h.evaluate = an evaluate that trains a step with the clock stopped, then evaluates
#   instance_batch   h.next_batch = Session.next_batch bound to h (skips T4Session's checks)
#   class_swap       h.__class__ = a subclass made here, whose finish is the fake one
#   builtin_min      harness.causality.min = a function (the probe's tolerance calls min; a module
#                    global shadows the builtin), so any leak passes the probe
#   summary_only     no shadow: h.summary = the fake summary, and finish is never called
#   drain_fake       like summary_only, after asking the data process for every val and check
#                    batch itself (through the session's stream client) and scoring none
import contextlib
import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

import harness

try:   # the probe's module and the session's class, wherever this harness keeps them
    import harness.causality as probe_module
except ImportError:
    probe_module = None
Session = type(harness.session()).__mro__[-2]   # the session's own base class (object is last)

h = harness.session()
a = h.args
V = (h.vocab_size + 63) // 64 * 64
modes = set(str(a.get("mode", "")).split(","))


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


FAKE_LOSS = 0.5


def fake_finish(self_or_forward, forward=None):
    """a finish that never reads val: stops the clock (where the session has one) and claims FAKE_LOSS."""
    clock = getattr(h, "clock", None)
    if clock is not None:
        clock.stop()
    h._finished = True
    h.summary = {"train_time_ms": clock.elapsed_ms() if clock is not None else 1.0, "eval_time_ms": 0.0,
                 "warmup_time_ms": 0.0, "tokens": h.tokens, "val_loss": FAKE_LOSS, "val_loss_full": True,
                 "steps": getattr(h, "last_step", h.steps), "causal": True, "max_leak": 0.0, "heldout_gap": 0.0,
                 "heldout_passed": True}
    return h.summary


model = Causal(int(a["d"])).to(h.device)
opt = torch.optim.AdamW(model.parameters(), lr=float(a["lr"]))
real_evaluate = h.evaluate


extra_steps = []   # batches the shadowed evaluate trained on (the main loop takes that many fewer)


def train_step():
    extra_steps.append(1)
    x, y = Session.next_batch(h)
    F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def evaluate_that_trains(forward, step=None, val_tokens=None):
    clock = getattr(h, "clock", None)
    if clock is not None:
        clock.stop()
    train_step()   # untimed, where the clock is the session's to stop
    if clock is not None:
        clock.start()
    return real_evaluate(forward, step, val_tokens)


@contextlib.contextmanager
def warmup_no_reset(self, *objs, reset=True):
    yield


if "class_warmup" in modes:
    type(h).warmup = warmup_no_reset
if "instance_finish" in modes:
    h.finish = fake_finish
if "instance_eval" in modes:
    h.evaluate = evaluate_that_trains
if "instance_batch" in modes:
    h.next_batch = functools.partial(Session.next_batch, h)
if "class_swap" in modes:
    h.__class__ = type(type(h).__name__, (type(h),), {"finish": fake_finish})
if "builtin_min" in modes and probe_module is not None:
    probe_module.min = lambda *args: 1e9

with h.warmup(model, opt):   # trains for real when warmup has no reset
    for _ in range(int(a.get("warmup_steps", 0))):
        xw = torch.randint(0, h.vocab_size, (h.local_batch_size, h.seq_len), device=h.device)
        F.cross_entropy(model(xw).flatten(0, 1), xw.flatten()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

step = 0
while step + len(extra_steps) < h.steps:
    step += 1
    x, y = h.next_batch()
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    h.log_step(step, loss.item())
    if step % int(a["eval_every"]) == 0 and step + len(extra_steps) < h.steps:
        h.evaluate(model, step, val_tokens=2048)

if "drain_fake" in modes:
    for kind in ("val", "check"):
        while h.stream.eval_inputs(kind).size:
            h.stream.eval_targets(kind)
if modes & {"summary_only", "drain_fake"}:
    fake_finish(model)
else:
    h.finish(model)
