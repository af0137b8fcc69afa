"""dense_muon_t4_v2: dense_muon_t4's model and training, with a step that never waits for the host.

a 6-layer, 768-wide dense transformer (rotary, qk-norm, relu², zero-initialised projections,
untied head) trained with muon on its hidden matrices and AdamW on the embedding, head and
gains; fp16 autocast with a GradScaler on cuda (a t4 has no native bf16), float32 on the cpu.
the learning rate warms up briefly, holds, then cools down linearly. the harness serves the
batches, owns the clock and computes the val loss; this file only trains.

what changed from dense_muon_t4 (same model, optimizers, schedule and tokens per step):
- an overflowed fp16 step is skipped on the device: both optimizers read one found_inf flag,
  so the host no longer waits for the gpu twice a step (a python `if` on the gradient norm and
  GradScaler's own check for muon). the loss readback for h.log_step is the one sync left.
- 2 micro-steps of 16 rows instead of 4 of 8: fewer, larger kernels (peak memory ~9.3 GiB).
- the untimed warm-up also runs one full optimizer step (the harness restores every state
  after), so the first timed step does not pay for first kernel loads and optimizer state."""
import math
from contextlib import nullcontext
from dataclasses import dataclass, fields

import torch

import harness
from model import GPT, GPTConfig
from optim import Muon

h = harness.session()


@dataclass
class Hyperparameters:
    # model
    n_layer: int = 6  # transformer blocks
    n_head: int = 6  # attention heads per block (head_dim = n_embd / n_head)
    n_embd: int = 768  # residual stream width
    mlp_ratio: int = 4  # mlp hidden width / n_embd
    # optimizers
    muon_lr: float = 0.02  # muon: each update is lr · sqrt(max(1, rows/cols)) × a near-orthogonal matrix
    muon_momentum: float = 0.95  # muon's nesterov momentum
    ns_dtype: str = "float16"  # newton-schulz precision on cuda: float16 (t4 tensor cores) or float32; cpu: float32
    embed_lr: float = 0.3  # AdamW lr for the input embedding (its output is rms-normed)
    head_lr: float = 0.008  # AdamW lr for the untied output head
    gain_lr: float = 0.04  # AdamW lr for the rms-norm gains
    adam_beta1: float = 0.8  # AdamW first-moment decay
    adam_beta2: float = 0.95  # AdamW second-moment decay
    # schedule (the same multiplier for every learning rate)
    warmup_steps: int = 5  # linear warm-up from 0
    cooldown_frac: float = 0.4  # the last fraction of the steps decays linearly ...
    final_lr_frac: float = 0.0  # ... to this fraction of the peak
    # evaluation and runtime
    eval_every: int = 10  # steps between progress evals (the final full eval always runs)
    eval_tokens: int = 524288  # val prefix a progress eval reads; the full eval reads all of it
    compile: bool = False  # torch.compile the training forward + backward (the full scale on cuda)


HARNESS_ARGS = {"eval_seq_len", "eval_batch_size"}  # read by the harness itself
known = {f.name for f in fields(Hyperparameters)}
unknown = sorted(set(h.args) - known - HARNESS_ARGS)
if unknown:
    raise ValueError(f"record.toml args {unknown} are not hyperparameters of dense_muon_t4_v2; known: {sorted(known)}")
args = Hyperparameters(**{k: v for k, v in h.args.items() if k in known})
if h.world_size != 1:
    raise RuntimeError("dense_muon_t4_v2 trains on one gpu; run it without torchrun")

# -- precision: fp16 autocast + loss scaling on cuda, plain float32 on the cpu ----------------
on_cuda = h.device.startswith("cuda")


def amp():
    return torch.autocast("cuda", dtype=torch.float16) if on_cuda else nullcontext()


scaler = torch.amp.GradScaler("cuda", enabled=on_cuda)

# -- model: the vocabulary padded to a multiple of 64 -----------------------------------------
padded_vocab = math.ceil(h.vocab_size / 64) * 64
eval_seq_len = int(h.args.get("eval_seq_len", h.seq_len))
cfg = GPTConfig(vocab_size=padded_vocab, real_vocab_size=h.vocab_size, n_layer=args.n_layer, n_head=args.n_head,
                n_embd=args.n_embd, mlp_ratio=args.mlp_ratio, max_seq_len=max(h.seq_len, eval_seq_len))
model = GPT(cfg).to(h.device)
counts = model.param_counts()
print(f"model: {cfg.n_layer} layers x {cfg.n_embd} wide, {cfg.n_head} heads, vocab {h.vocab_size} padded to {padded_vocab} | "
      f"params {counts['total'] / 1e6:.1f}M | matmul_params={counts['matmul']}", flush=True)

# -- optimizers: muon for hidden matrices, AdamW for the rest ---------------------------------
hidden = [p for p in model.blocks.parameters() if p.dim() == 2]
gains = [p for p in model.parameters() if p.dim() < 2]
if args.ns_dtype not in ("float32", "float16"):
    raise ValueError(f"ns_dtype must be float32 or float16 (a t4 has no bf16 units), not {args.ns_dtype!r}")
ns_dtype = getattr(torch, args.ns_dtype) if on_cuda else torch.float32
muon = Muon(hidden, lr=args.muon_lr, momentum=args.muon_momentum, ns_dtype=ns_dtype)
adamw = torch.optim.AdamW(
    [{"params": [model.embed.weight], "lr": args.embed_lr},
     {"params": [model.lm_head.weight], "lr": args.head_lr},
     {"params": gains, "lr": args.gain_lr}],
    betas=(args.adam_beta1, args.adam_beta2), eps=1e-10, weight_decay=0.0, fused=on_cuda)
optimizers = [adamw, muon]
for opt in optimizers:
    for group in opt.param_groups:
        group["peak_lr"] = group["lr"]


def lr_factor(step: int) -> float:
    """warm-up, hold, linear cool-down; step is 1-based."""
    if step <= args.warmup_steps:
        return step / args.warmup_steps
    cooldown_start = h.steps * (1.0 - args.cooldown_frac)
    if step <= cooldown_start:
        return 1.0
    left = (h.steps - step) / (h.steps - cooldown_start)  # 1 -> 0 over the cool-down
    return args.final_lr_frac + (1.0 - args.final_lr_frac) * left


# the training forward (x, y) -> loss may be compiled; evaluation uses the eager model, so the
# harness's eval, causality and held-out passes (other batch shapes) never trigger a recompile
train_forward = torch.compile(model) if args.compile else model


def forward(x):
    """(B, T) int64 -> logits (B, T, padded_vocab): pure inference, for the harness."""
    with amp():
        return model(x)


def optimizer_step():
    """unscale, then both optimizers step together, or neither when a gradient overflowed.
    returns the 0-d skip flag (1.0: skipped) without reading it back on cuda."""
    # muon's update is scale-free: it must see the true gradients, and none after an overflow
    for opt in optimizers:
        scaler.unscale_(opt)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))  # measures, never clips
    found_inf = (~torch.isfinite(grad_norm)).float()  # 0-d, stays on the device
    if on_cuda:
        for opt in optimizers:  # fused AdamW and our muon both skip on this flag, no sync
            opt.found_inf = found_inf
            opt.step()
            del opt.found_inf
    elif not found_inf:  # the cpu's AdamW is not fused and takes no flag; a sync costs nothing there
        for opt in optimizers:
            opt.step()
    scaler.update()  # lowers the loss scale after an overflow
    model.zero_grad(set_to_none=True)
    return found_inf


if args.compile:
    # untimed: compile forward + backward on random tokens and take one optimizer step, so the
    # first timed step finds every kernel loaded; the harness restores all state after
    with h.warmup(model, *optimizers, scaler):
        # separate inputs and targets: the compiled graph guards on aliasing, and x is never y in training
        dummy_x, dummy_y = (torch.randint(0, h.vocab_size, (h.local_batch_size, h.seq_len), device=h.device) for _ in range(2))
        for _ in range(2):
            with amp():
                loss = train_forward(dummy_x, dummy_y)
            scaler.scale(loss).backward()
        optimizer_step()

# -- training --------------------------------------------------------------------------------
skipped = torch.zeros((), device=h.device)  # steps skipped because the fp16 gradients overflowed
for step in range(1, h.steps + 1):
    factor = lr_factor(step)
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["peak_lr"] * factor
    loss_sum = torch.zeros((), device=h.device)
    for _ in range(h.grad_accum):
        x, y = h.next_batch()  # (B, T) each
        with amp():
            loss = train_forward(x, y)
        scaler.scale(loss / h.grad_accum).backward()
        loss_sum += loss.detach()
    skipped += optimizer_step()
    h.log_step(step, loss_sum.item() / h.grad_accum)
    if step % args.eval_every == 0 and step < h.steps:
        h.evaluate(forward, step, val_tokens=args.eval_tokens)

if skipped.item():
    print(f"fp16: skipped {int(skipped.item())} of {h.steps} optimizer steps (gradient overflow)", flush=True)
h.finish(forward)
