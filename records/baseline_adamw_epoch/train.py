"""baseline_adamw_epoch: baseline_adamw's gpt-2 small and AdamW recipe, trained for one epoch of the docs track.

the code is baseline_adamw's, unchanged but for names in messages: the docs target is this recipe's mean
final val loss after exactly one epoch (record.toml declares those steps). fp16
autocast with a GradScaler on cuda (a t4 has no native bf16), float32 on the cpu. the harness
serves the batches, owns the clock and computes the val loss; this file only trains."""
import math
from contextlib import nullcontext
from dataclasses import dataclass, fields

import torch

import harness
from model import GPT, GPTConfig

h = harness.session()


@dataclass
class Hyperparameters:
    # model
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads per block
    n_embd: int = 768  # residual stream width
    # optimizer
    lr: float = 6e-4  # peak AdamW learning rate (the gpt-3 paper's value for 125M)
    min_lr_frac: float = 0.1  # the cosine decays to this fraction of lr at the last step
    warmup_steps: int = 16  # linear warm-up steps before the cosine
    weight_decay: float = 0.1  # on matrices and the embedding; none on biases and layernorms
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay
    grad_clip: float = 1.0  # global gradient-norm clip, applied after unscaling
    # evaluation and runtime
    eval_every: int = 20  # steps between progress evals (the final full eval always runs)
    eval_tokens: int = 524288  # val prefix a progress eval reads; the full eval reads all of it
    compile: bool = False  # torch.compile the training forward (the full scale on cuda)


HARNESS_ARGS = {"eval_seq_len", "eval_batch_size"}  # read by the harness itself
known = {f.name for f in fields(Hyperparameters)}
unknown = sorted(set(h.args) - known - HARNESS_ARGS)
if unknown:
    raise ValueError(f"record.toml args {unknown} are not hyperparameters of baseline_adamw_epoch; known: {sorted(known)}")
args = Hyperparameters(**{k: v for k, v in h.args.items() if k in known})
if h.world_size != 1:
    raise RuntimeError("baseline_adamw_epoch trains on one gpu; run it without torchrun")

# -- precision: fp16 autocast + loss scaling on cuda, plain float32 on the cpu ----------------
on_cuda = h.device.startswith("cuda")


def amp():
    return torch.autocast("cuda", dtype=torch.float16) if on_cuda else nullcontext()


scaler = torch.amp.GradScaler("cuda", enabled=on_cuda)

# -- model: the vocabulary padded to a multiple of 64 -----------------------------------------
padded_vocab = math.ceil(h.vocab_size / 64) * 64
eval_seq_len = int(h.args.get("eval_seq_len", h.seq_len))
cfg = GPTConfig(vocab_size=padded_vocab, real_vocab_size=h.vocab_size, block_size=max(h.seq_len, eval_seq_len),
                n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd)
model = GPT(cfg).to(h.device)
counts = model.param_counts()
print(f"model: {cfg.n_layer} layers x {cfg.n_embd} wide, {cfg.n_head} heads, vocab {h.vocab_size} padded to {padded_vocab} | "
      f"params {counts['total'] / 1e6:.1f}M | matmul_params={counts['matmul']}", flush=True)

# -- optimizer: AdamW, weight decay on 2-d tensors only ---------------------------------------
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
optimizer = torch.optim.AdamW(
    [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
    lr=args.lr, betas=(args.beta1, args.beta2), eps=1e-8, fused=on_cuda)


def lr_at(step: int) -> float:
    """linear warm-up to lr, then a cosine down to min_lr_frac * lr at the last step (step is 1-based)."""
    if step <= args.warmup_steps:
        return args.lr * step / args.warmup_steps
    progress = (step - args.warmup_steps) / max(1, h.steps - args.warmup_steps)
    min_lr = args.lr * args.min_lr_frac
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (args.lr - min_lr)


# the training forward (x, y) -> loss may be compiled; evaluation uses the eager model, so the
# harness's eval, causality and held-out passes (other batch shapes) never trigger a recompile
train_forward = torch.compile(model) if args.compile else model


def forward(x):
    """(B, T) int64 -> logits (B, T, padded_vocab): pure inference, for the harness."""
    with amp():
        return model(x)


if args.compile:
    # untimed: compile forward + backward on random tokens; the harness restores all state after
    with h.warmup(model, optimizer, scaler):
        # separate inputs and targets: the compiled graph guards on aliasing, and x is never y in training
        dummy_x, dummy_y = (torch.randint(0, h.vocab_size, (h.local_batch_size, h.seq_len), device=h.device) for _ in range(2))
        for _ in range(2):
            with amp():
                loss = train_forward(dummy_x, dummy_y)
            scaler.scale(loss).backward()
        model.zero_grad(set_to_none=True)

# -- training --------------------------------------------------------------------------------
skipped = 0  # optimizer steps skipped by the GradScaler (fp16 overflow)
for step in range(1, h.steps + 1):
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step)
    loss_sum = torch.zeros((), device=h.device)
    for _ in range(h.grad_accum):
        x, y = h.next_batch()  # (B, T) each
        with amp():
            loss = train_forward(x, y)
        scaler.scale(loss / h.grad_accum).backward()
        loss_sum += loss.detach()
    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
    scale_before = scaler.get_scale()
    scaler.step(optimizer)  # skipped when the unscaled gradients hold inf/nan
    scaler.update()
    skipped += int(scaler.get_scale() < scale_before)
    optimizer.zero_grad(set_to_none=True)
    h.log_step(step, loss_sum.item() / h.grad_accum)
    if step % args.eval_every == 0 and step < h.steps:
        h.evaluate(forward, step, val_tokens=args.eval_tokens)

if skipped:
    print(f"fp16: the GradScaler skipped {skipped} of {h.steps} optimizer steps (overflow)", flush=True)
h.finish(forward)
