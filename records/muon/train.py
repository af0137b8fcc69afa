"""muon: NanoPoor's "Used Muon instead" (#2 on its leaderboard), re-implemented strictly causal.

first_run's model (119M parameters, 75M active per token; MLA + NSA-style attention, DS-MoE)
trained with Muon for the hidden matrices (every 2-d weight inside the blocks) and AdamW for the
embedding/head table, the norms' gains and the gate biases. fp16 autocast with a GradScaler on
cuda (a t4 has no native bf16), float32 on the cpu; Muon's Newton-Schulz iteration runs in
float32 (optim.py says why). the harness serves the batches, owns the clock and computes the
val loss; this file only trains."""
import math
from contextlib import nullcontext
from dataclasses import dataclass, fields

import torch

import harness
from model import GPT, GPTConfig, reset_expert_load, update_expert_bias
from optim import Muon

h = harness.session()


@dataclass
class Hyperparameters:
    lr: float = 1e-3  # peak AdamW learning rate (embedding/head, norms, biases): the seed's --lr
    muon_lr: float = 0.02  # peak Muon learning rate (hidden matrices): the seed's fixed value
    muon_momentum: float = 0.95  # Muon's nesterov momentum
    min_lr_frac: float = 0.1  # the cosine ends at this fraction of each peak lr (the seed: 1e-3 down to 1e-4)
    warmup_steps: int = 10  # linear warm-up from lr/1000, as the seed's LinearLR(start_factor=1e-3)
    weight_decay: float = 0.1  # AdamW's, on the embedding/head table only; Muon uses none (as the seed)
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay
    grad_clip: float = 1.0  # global gradient-norm clip, applied after unscaling
    bias_update_rate: float = 1e-3  # gamma of the aux-loss-free expert balancing, per optimizer step
    eval_every: int = 50  # steps between progress evals (the final full eval always runs)
    eval_tokens: int = 524288  # val prefix a progress eval reads; the full eval reads all of it
    compile: bool = True  # torch.compile the training forward (cuda only; the smoke scale turns it off)


# h.args holds both these hyperparameters and the model's shape (GPTConfig's fields)
HARNESS_ARGS = {"eval_seq_len", "eval_batch_size"}  # read by the harness itself
known = {f.name for f in fields(Hyperparameters)}
shape = {f.name for f in fields(GPTConfig)} - {"vocab_size", "seq_len"}
unknown = sorted(set(h.args) - known - shape - HARNESS_ARGS)
if unknown:
    raise ValueError(f"record.toml args {unknown} are neither hyperparameters nor model fields; known: {sorted(known | shape)}")
args = Hyperparameters(**{k: v for k, v in h.args.items() if k in known})
if h.world_size != 1:
    raise RuntimeError("muon trains on one gpu; run it without torchrun")

# -- precision: fp16 autocast + loss scaling on cuda, plain float32 on the cpu ----------------
on_cuda = h.device.startswith("cuda")


def amp():
    return torch.autocast("cuda", dtype=torch.float16) if on_cuda else nullcontext()


scaler = torch.amp.GradScaler("cuda", enabled=on_cuda)

# -- model ------------------------------------------------------------------------------------
eval_seq_len = int(h.args.get("eval_seq_len", h.seq_len))
cfg = GPTConfig(vocab_size=h.vocab_size, seq_len=max(h.seq_len, eval_seq_len), **{k: v for k, v in h.args.items() if k in shape})
model = GPT(cfg).to(h.device)
counts = model.param_counts()
print(f"model: {cfg.n_layer} layers x {cfg.n_embd}, {cfg.n_head} heads, moe {cfg.n_experts}+1 experts top-{cfg.top_k}, "
      f"vocab {cfg.vocab_size} padded to {cfg.padded_vocab} | params {counts['total'] / 1e6:.2f}M total, "
      f"{counts['active'] / 1e6:.2f}M active per token", flush=True)

# -- optimizers: Muon for the blocks' matrices, AdamW for the rest ---------------------------
hidden_matrices = [p for name, p in model.named_parameters() if name.startswith("blocks.") and p.dim() == 2]
is_matrix = {id(p) for p in hidden_matrices}
rest = [p for p in model.parameters() if id(p) not in is_matrix]  # wte (tied head), norm gains, gate biases
muon = Muon(hidden_matrices, lr=args.muon_lr, momentum=args.muon_momentum, nesterov=True, ns_steps=5)
adamw = torch.optim.AdamW(
    [{"params": [p for p in rest if p.dim() >= 2], "weight_decay": args.weight_decay},
     {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0}],
    lr=args.lr, betas=(args.beta1, args.beta2), eps=1e-8, fused=on_cuda)
optimizers = [muon, adamw]
print(f"optimizers: Muon {sum(p.numel() for p in hidden_matrices):,} params in {len(hidden_matrices)} matrices, "
      f"AdamW {sum(p.numel() for p in rest):,} params", flush=True)


def lr_factor(step: int) -> float:
    """multiplier on every base lr: linear warm-up from 1/1000, then a cosine down to min_lr_frac."""
    if step <= args.warmup_steps:
        return 1e-3 + (1 - 1e-3) * step / args.warmup_steps
    progress = (step - args.warmup_steps) / max(1, h.steps - args.warmup_steps)
    floor = args.min_lr_frac
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1 - floor)


for opt in optimizers:
    for group in opt.param_groups:
        group["base_lr"] = group["lr"]

# the transformer body may be compiled (the moe dispatch and the chunked loss stay eager);
# evaluation uses the eager model, so the harness's eval, causality and held-out passes (other
# batch shapes, no grad) never trigger a compile
use_compile = args.compile and on_cuda
hidden = torch.compile(model.hidden) if use_compile else model.hidden


def train_loss(x, y):
    with amp():
        return model.head_loss(hidden(x), y)


def forward(x):
    """(B, T) int64 -> logits (B, T, padded_vocab): pure inference, for the harness."""
    with amp():
        return model(x)


if use_compile:
    # untimed: compile forward + backward on random tokens; the harness restores all state after
    with h.warmup(model, *optimizers, scaler):
        dummy = torch.randint(0, h.vocab_size, (h.local_batch_size, h.seq_len), device=h.device)
        for _ in range(2):
            scaler.scale(train_loss(dummy, dummy)).backward()
        model.zero_grad(set_to_none=True)
    reset_expert_load(model)  # the dummy batches' expert loads must not steer the first bias update

# -- training --------------------------------------------------------------------------------
skipped = 0  # optimizer steps skipped by the GradScaler (fp16 overflow)
for step in range(1, h.steps + 1):
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * lr_factor(step)
    loss_sum = torch.zeros((), device=h.device)
    for _ in range(h.grad_accum):
        x, y = h.next_batch()  # (B, T) each
        loss = train_loss(x, y)
        scaler.scale(loss / h.grad_accum).backward()
        loss_sum += loss.detach()
    for opt in optimizers:
        scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
    torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
    scale_before = scaler.get_scale()
    for opt in optimizers:
        scaler.step(opt)  # skipped when the unscaled gradients hold inf/nan
    scaler.update()
    skipped += int(scaler.get_scale() < scale_before)
    update_expert_bias(model, args.bias_update_rate)  # training only: never inside a forward
    model.zero_grad(set_to_none=True)
    h.log_step(step, loss_sum.item() / h.grad_accum)
    if step % args.eval_every == 0 and step < h.steps:
        h.evaluate(forward, step, val_tokens=args.eval_tokens)

if skipped:
    print(f"fp16: the GradScaler skipped {skipped} of {h.steps} optimizer steps (overflow)", flush=True)
h.finish(forward)
