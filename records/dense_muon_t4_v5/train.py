"""dense_muon_t4_v5: dense_muon_t4_v4 made to learn more per token, for runs of about a million tokens.

a 6-layer, 768-wide dense transformer (v4's: rotary, qk-norm, relu², zero-initialised
projections and head, untied head) with value embeddings, x0 and u-net skips, a per-head
attention gate, a logit bias and soft-cap (model.py), trained with muon on its hidden matrices
(momentum near 0.85, lr 0.05) and AdamW on the embeddings, head, bias and small parameters; fp16
autocast with a GradScaler on cuda (a t4 has no native bf16), float32 on the cpu. no warm-up:
the learning rates hold, then cool down linearly to a tenth over the last 45% of the steps.
the harness serves the batches, owns the clock and computes the val loss; this file only trains.

what changed from dense_muon_t4_v4 besides the model and the optimizer settings:
- no progress evaluations by default: under the harness's clock they would be timed.
- the loss of step k is read back after step k+1 is queued, so the host never waits for the
  gpu to drain (v4 read each step's loss at its end).
- the forward handed to the harness reads an fp16 copy of the weights (handover_dtype): the
  weights handed over at the end of training are half the bytes of the fp32 masters."""
import math
from contextlib import nullcontext
from dataclasses import dataclass, fields

import torch

import harness
from model import GPT, GPTConfig, inference_copy
from optim import build_optimizers, optimizer_step, set_schedule

h = harness.session()


@dataclass
class Hyperparameters:
    # model (model.py's GPTConfig says what each part does)
    n_layer: int = 6  # transformer blocks
    n_head: int = 6  # attention heads per block (head_dim = n_embd / n_head)
    n_embd: int = 768  # residual stream width
    mlp_ratio: int = 4  # mlp hidden width / n_embd
    rope: str = "half"  # "half": rotary on half of each head's dims, the rest position-free; "full": v4's
    attn_scale: float = 0.12  # attention logit scale (qk-normed heads); 0: 1/sqrt(head_dim)
    value_embeds: int = 3  # value-embedding tables, each read by one early and one late block; 0: none
    x0_mix: bool = True  # every block mixes the input embedding back in with two learned scalars
    unet: bool = True  # first-half blocks hand their output to their mirror in the second half
    attn_gate_dims: int = 12  # residual dims that drive each head's sigmoid output gate; 0: no gate
    logit_bias: bool = True  # a learned bias over the vocabulary (the unigram has its own parameters)
    logit_softcap: float = 15.0  # cap · tanh(logits / cap); 0: no cap
    head_rank: int = 0  # > 0: a low-rank head, n_embd -> head_rank -> vocab (fewer flops); 0: full rank
    window_layers: str = ""  # comma-separated layers with sliding-window attention; "": full causal everywhere
    window_start: int = 128  # the window at the first step (tokens), when window_layers is set ...
    window_end: int = 512  # ... growing linearly to this at the last step (and at evaluation)
    # optimizers
    muon_lr: float = 0.05  # muon: each update is lr · sqrt(max(1, rows/cols)) × a near-orthogonal matrix
    muon_momentum_start: float = 0.85  # muon's nesterov momentum at the first step ...
    muon_momentum: float = 0.95  # ... rising linearly to this ...
    momentum_warmup_steps: int = 300  # ... over this many steps (a 60-step run stays near the start)
    muon_split_qkv: bool = True  # orthogonalise q, k and v separately (False: as one 3C x C matrix, as v4)
    ns_steps: int = 5  # newton-schulz iterations per muon step
    ns_dtype: str = "float16"  # newton-schulz precision on cuda: float16 (t4 tensor cores) or float32; cpu: float32
    embed_lr: float = 0.6  # AdamW lr for the input embedding (its output is rms-normed)
    value_embed_lr: float = 0.6  # AdamW lr for the value-embedding tables
    head_lr: float = 0.008  # AdamW lr for the untied output head
    scalar_lr: float = 0.04  # AdamW lr for gains, mixing scalars, skip weights and attention gates
    bias_lr: float = 0.2  # AdamW lr for the logit bias
    adam_beta1: float = 0.8  # AdamW first-moment decay
    adam_beta2: float = 0.95  # AdamW second-moment decay
    adam_eps: float = 1e-10  # AdamW epsilon
    # schedule (the same multiplier for every learning rate)
    warmup_steps: int = 0  # linear warm-up from 0 (zero-initialised projections and head need none)
    cooldown_frac: float = 0.45  # the last fraction of the steps decays linearly ...
    final_lr_frac: float = 0.1  # ... to this fraction of the peak
    # evaluation, handover and runtime
    eval_every: int = 0  # steps between progress evals, which run on the train clock; 0: none
    eval_tokens: int = 65536  # val prefix a progress eval reads
    handover_dtype: str = "float16"  # dtype of the weights the evaluation forward reads (cuda); the cpu keeps float32
    compile: bool = False  # torch.compile the training forward + backward (the full scale on cuda)


HARNESS_ARGS = {"eval_seq_len", "eval_batch_size"}  # read by the harness itself
known = {f.name for f in fields(Hyperparameters)}
unknown = sorted(set(h.args) - known - HARNESS_ARGS)
if unknown:
    raise ValueError(f"record.toml args {unknown} are not hyperparameters of dense_muon_t4_v5; known: {sorted(known)}")
args = Hyperparameters(**{k: v for k, v in h.args.items() if k in known})
if h.world_size != 1:
    raise RuntimeError("dense_muon_t4_v5 trains on one gpu; run it without torchrun")
if args.handover_dtype not in ("float16", "float32"):
    raise ValueError(f"handover_dtype must be float16 or float32 (a t4 has no bf16), not {args.handover_dtype!r}")

# -- precision: fp16 autocast + loss scaling on cuda, plain float32 on the cpu ----------------
on_cuda = h.device.startswith("cuda")


def amp():
    return torch.autocast("cuda", dtype=torch.float16) if on_cuda else nullcontext()


scaler = torch.amp.GradScaler("cuda", enabled=on_cuda)

# -- model: the vocabulary padded to a multiple of 64, built on the device ---------------------
padded_vocab = math.ceil(h.vocab_size / 64) * 64
eval_seq_len = int(h.args.get("eval_seq_len", h.seq_len))
cfg = GPTConfig(vocab_size=padded_vocab, real_vocab_size=h.vocab_size, n_layer=args.n_layer, n_head=args.n_head,
                n_embd=args.n_embd, mlp_ratio=args.mlp_ratio, max_seq_len=max(h.seq_len, eval_seq_len), rope=args.rope,
                attn_scale=args.attn_scale, value_embeds=args.value_embeds, x0_mix=args.x0_mix, unet=args.unet,
                attn_gate_dims=args.attn_gate_dims, logit_bias=args.logit_bias, logit_softcap=args.logit_softcap,
                head_rank=args.head_rank, window_layers=args.window_layers)
with torch.device(h.device):  # initialised where it trains: no 400M-parameter init on the host
    model = GPT(cfg)
counts = model.param_counts()
print(f"model: {cfg.n_layer} layers x {cfg.n_embd} wide, {cfg.n_head} heads, vocab {h.vocab_size} padded to {padded_vocab}, "
      f"{len(model.value_embeds)} value embeddings | params {counts['total'] / 1e6:.1f}M | matmul_params={counts['matmul']}",
      flush=True)

# -- optimizers: muon for hidden matrices, AdamW for the rest ---------------------------------
adamw, muon = build_optimizers(model, args, on_cuda)
optimizers = [adamw, muon]

# the training forward (x, y) -> loss may be compiled; evaluation uses an eager copy of the model,
# so the harness's eval, causality and held-out passes (other batch shapes) never recompile
train_forward = torch.compile(model) if args.compile else model

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
        optimizer_step(model, optimizers, scaler, on_cuda)


def make_forward(net):
    def forward(x):
        """(B, T) int64 -> logits (B, T, padded_vocab): pure inference, for the harness."""
        with amp():
            return net(x)
    return forward


# -- training --------------------------------------------------------------------------------
skipped = torch.zeros((), device=h.device)  # steps skipped because the fp16 gradients overflowed
pending = None  # (step, 0-d loss) not read back yet: read after the next step is queued
for step in range(1, h.steps + 1):
    set_schedule(model, adamw, muon, step, h.steps, args)
    loss_sum = torch.zeros((), device=h.device)
    for _ in range(h.grad_accum):
        x, y = h.next_batch()  # (B, T) each
        with amp():
            loss = train_forward(x, y)
        scaler.scale(loss / h.grad_accum).backward()
        loss_sum += loss.detach()
    skipped += optimizer_step(model, optimizers, scaler, on_cuda)
    if pending is not None:
        h.log_step(pending[0], pending[1].item())  # the step before: done by now, the gpu keeps working
    pending = (step, loss_sum / h.grad_accum)
    if args.eval_every and step % args.eval_every == 0 and step < h.steps:
        h.log_step(pending[0], pending[1].item())
        pending = None
        h.evaluate(make_forward(model), step, val_tokens=args.eval_tokens)
if pending is not None:
    h.log_step(pending[0], pending[1].item())

if skipped.item():
    print(f"fp16: skipped {int(skipped.item())} of {h.steps} optimizer steps (gradient overflow)", flush=True)
# the evaluation reads a copy in handover_dtype (fp16 halves the bytes handed over); the cpu's
# float32 matmuls cannot take fp16 weights, so it keeps float32 and the model itself
handover_dtype = getattr(torch, args.handover_dtype) if on_cuda else torch.float32
h.finish(make_forward(model.eval() if handover_dtype == torch.float32 else inference_copy(model, handover_dtype)))
