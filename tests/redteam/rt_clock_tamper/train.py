# makes the train clock read less than the time spent. modes:
#   now_ns        rebinds harness.clock._now_ns to a clock running at a tenth of the speed
#   elapsed_ms    replaces Clock.elapsed_ms
#   perf_counter  replaces time.perf_counter_ns (the clock captured its own copy; still a tamper)
#   rewind        sets the clock's private counter back to zero before h.finish
#   temporary     shifts harness.clock._now_ns back 400 ms just for the clock stop at the start
#                 of an evaluation; the forward puts the real one back before the harness looks
#   tolerance     loosens the causality tolerance (harness.causality.ABS_TOLERANCE)
#   sync          makes torch.cuda.synchronize a no-op (on a gpu the clock would stop before
#                 the queued kernels ran)
# several modes may be given, comma-separated.
import time
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

import harness

try:   # the clock's and the probe's modules, where this harness keeps them in the record's process
    import harness.causality as probe_module
    import harness.clock as clock_module
except ImportError:   # a harness whose clock is not in this process: the tampering finds nothing to tamper with
    probe_module = SimpleNamespace()
    clock_module = SimpleNamespace(_now_ns=time.perf_counter_ns, Clock=SimpleNamespace())
print(f"clock in this process: {hasattr(clock_module, '__file__')}", flush=True)

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
modes = set(a.get("mode", "now_ns").split(","))
mode = next(iter(modes)) if len(modes) == 1 else "several"
real_now = clock_module._now_ns
t0 = real_now()


def slow_now():
    return t0 + (real_now() - t0) // 10


if "now_ns" in modes:
    clock_module._now_ns = slow_now
if "elapsed_ms" in modes:
    clock_module.Clock.elapsed_ms = lambda self: 1.0
if "perf_counter" in modes:
    time.perf_counter_ns = lambda: 0
if "tolerance" in modes:
    probe_module.ABS_TOLERANCE = 1e9
if "sync" in modes:
    torch.cuda.synchronize = lambda device=None: None


def forward(x):
    if mode == "temporary":
        clock_module._now_ns = real_now                    # restored inside the pause
    return model(x)


for step in range(1, h.steps + 1):
    x, y = h.next_batch()
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if mode in ("temporary", "rewind", "now_ns"):
        time.sleep(0.15)                                   # work the clock should see
    h.log_step(step, loss.item())
    if step % int(a["eval_every"]) == 0 and step < h.steps:
        if mode == "temporary":
            clock_module._now_ns = lambda: real_now() - 400_000_000
        h.evaluate(forward, step, val_tokens=2048)

if mode == "rewind" and hasattr(h, "clock"):
    h.clock.stop()
    h.clock._elapsed_ns = 0
h.finish(forward)
