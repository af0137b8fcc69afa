"""dense_muon_t4_ddp_v6: dense_muon_t4_v2 on one or more gpus (torchrun), data parallel, with
dense_muon_t4_ddp_v5's step, the embedding's all-gather moved ahead of newton-schulz's.

the model, optimizers, schedule and budget are dense_muon_t4_v2's (a 6-layer, 768-wide dense
transformer; muon on its hidden matrices, AdamW on the embedding, head and gains; fp16 autocast
with a GradScaler on cuda, float32 on the cpu; the overflow skip decided on the device; 16-row
micro-batches). on one process (no torchrun) it is dense_muon_t4_ddp_v4's one-process loop.

what is new in v6 (v5's profile on 2 h200s: the optimizer's last two phases took 4.99 ms against
v4's 4.71, because the embedding's all-gather went to the nccl stream after newton-schulz's
gather, which was queued first: it started only once newton-schulz and its gather had ended, and
AdamW on the head waited for it):
- newton-schulz's stream may start as soon as the gradients are unscaled, as before; the host
  then forms the gradient of this rank's embedding rows, steps them and queues their all-gather
  (asynchronous) before it queues newton-schulz and its gather. on the one nccl stream the
  embedding's rows cross while newton-schulz computes, and the head's AdamW no longer waits for
  them: the step waits for the rows only before muon's updates are applied.
the numbers are v5's: the same kernels on the same tensors, only queued in another order.

kept from dense_muon_t4_ddp_v5: each rank forms the gradient of, and AdamW steps, its contiguous
1/ranks of the embedding's rows, which are then all-gathered; DDP's gradients are views into its
buckets.
kept from dense_muon_t4_ddp_v4: on cuda (compiled) the forward + backward of a step's micro-steps,
the all-reduce included, is captured once in the untimed warm-up (after 11 eager steps on a side
stream: DDP times its first 10 iterations) and replayed each step; the gathered embedding rows are
unscaled and checked for overflow with the trunk's gradients, before they are summed; the graph
is released after the replica check.
kept from dense_muon_t4_ddp_v2: torch.compile wraps the DDP module, so each gradient bucket's
all-reduce starts while the rest of the backward runs; micro-steps stack slices of the global
batches up to 16 rows (on 2 and 4 gpus one micro-step of 16 and 8 rows per rank); newton-schulz
is shared over the ranks. kept from dense_muon_t4_ddp_v3 (the profile of v2 on 4 gpus said where
its time went):
- the gradients cross between gpus in fp16 (a DDP communication hook casts each bucket, already
  divided by the ranks, and casts the sum back): half the bytes of the fp32 all-reduce.
- the embedding is not in DDP. its gradient is 77M numbers of which a step touches a few
  thousand rows; all-reducing it was the largest bucket, and the last (the embedding's gradient
  comes last in the backward). instead each rank all-gathers the gradient arriving at the trunk's
  input (8 rows x 1024 x 768 on 4 gpus) and the token ids, and forms the embedding's gradient
  from everyone's with the same kernel the embedding's backward uses.
- newton-schulz is dealt to the ranks by cost, with one all-gather, and it runs on a second
  cuda stream while AdamW steps (optim.py).
- one pass over the gradients checks for overflow and unscales them (optim.LossScaler, with
  GradScaler's schedule); v2 unscaled per optimizer and then took a gradient norm for the flag.
- the host waits for the gpu only at evaluations: the train loss is logged every eval_every steps
  and at the last step (v2 read it back every step, and the gpu idled while the host, after each
  readback, launched the next step).
the harness serves the batches, owns the clock and computes the val loss; this file only trains."""
import inspect
import math
from contextlib import nullcontext
from dataclasses import dataclass, fields

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel as DDP

import harness
from model import GPT, GPTConfig
from optim import LossScaler, Muon

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
    grad_comm: str = "float16"  # dtype of the gradients' all-reduce on cuda: float16 or float32 (the cpu: float32)
    cuda_graph: bool = True  # on cuda, compiled: replay the micro-steps' forward + backward as one cuda graph
    shard_embed: bool = True  # under DDP: each rank forms the gradient of, and steps, its share of the embedding's rows
    bucket_view: bool = True  # under DDP: gradients are views into DDP's buckets (no copy before the all-reduce)


HARNESS_ARGS = {"eval_seq_len", "eval_batch_size"}  # read by the harness itself
known = {f.name for f in fields(Hyperparameters)}
unknown = sorted(set(h.args) - known - HARNESS_ARGS)
if unknown:
    raise ValueError(f"record.toml args {unknown} are not hyperparameters of dense_muon_t4_ddp_v6; known: {sorted(known)}")
args = Hyperparameters(**{k: v for k, v in h.args.items() if k in known})
master = h.rank == 0  # prints once, not once per rank

# -- data parallelism: how a rank's micro-steps are cut ---------------------------------------
# the harness serves each global batch of batch_size rows split over the ranks (rank r gets rows
# r::world_size, local_batch_size of them). a micro-step stacks `stack` consecutive slices, the
# most that divide grad_accum and keep a micro-batch within the one-gpu batch_size rows: on one
# gpu 2 micro-steps of 16 rows (dense_muon_t4_v2), on 2 gpus one of 16 (2 x 8), on 4 one of 8
# (2 x 4). all micro-batches of a step hold equally many tokens, so loss / micro_steps on each
# rank, averaged over the ranks by DDP, is the mean over every token of the step: the one-gpu
# gradient of the same batch_size x grad_accum rows.
ddp = h.world_size > 1
stack = max(d for d in range(1, h.grad_accum + 1) if h.grad_accum % d == 0 and d * h.local_batch_size <= h.batch_size)
micro_steps = h.grad_accum // stack  # micro-steps per optimizer step, on every rank
micro_rows = h.local_batch_size * stack  # rows of one micro-batch: (micro_rows, seq_len)

# -- precision: fp16 autocast + loss scaling on cuda, plain float32 on the cpu ----------------
on_cuda = h.device.startswith("cuda")


def amp():
    # no cast cache: a graph captured under autocast must not keep casts made outside it (the
    # casts are the same numbers; each weight is used once per forward, so nothing is recast)
    return torch.autocast("cuda", dtype=torch.float16, cache_enabled=False) if on_cuda else nullcontext()


scaler = LossScaler(h.device, enabled=on_cuda)  # GradScaler's schedule, one pass to unscale (optim.py)

# -- model: the vocabulary padded to a multiple of 64 -----------------------------------------
padded_vocab = math.ceil(h.vocab_size / 64) * 64
eval_seq_len = int(h.args.get("eval_seq_len", h.seq_len))
cfg = GPTConfig(vocab_size=padded_vocab, real_vocab_size=h.vocab_size, n_layer=args.n_layer, n_head=args.n_head,
                n_embd=args.n_embd, mlp_ratio=args.mlp_ratio, max_seq_len=max(h.seq_len, eval_seq_len))
model = GPT(cfg).to(h.device)
counts = model.param_counts()
if master:
    print(f"model: {cfg.n_layer} layers x {cfg.n_embd} wide, {cfg.n_head} heads, vocab {h.vocab_size} padded to {padded_vocab} | "
          f"params {counts['total'] / 1e6:.1f}M | matmul_params={counts['matmul']}", flush=True)
    print(f"data parallel: {h.world_size} rank(s), {micro_steps} micro-steps of {micro_rows} x {h.seq_len} per rank per step",
          flush=True)

# -- optimizers: muon for hidden matrices, AdamW for the rest ---------------------------------
hidden = [p for p in model.trunk.blocks.parameters() if p.dim() == 2]
gains = [p for p in model.parameters() if p.dim() < 2]
if args.ns_dtype not in ("float32", "float16"):
    raise ValueError(f"ns_dtype must be float32 or float16 (a t4 has no bf16 units), not {args.ns_dtype!r}")
ns_dtype = getattr(torch, args.ns_dtype) if on_cuda else torch.float32
muon = Muon(hidden, lr=args.muon_lr, momentum=args.muon_momentum, ns_dtype=ns_dtype, rank=h.rank, world_size=h.world_size)
# the embedding's rows this rank forms the gradient of and steps: all of them on one rank (or
# without shard_embed), else a contiguous 1/ranks of the (padded) vocabulary. the shard is a
# parameter of its own whose storage is the embedding's: AdamW updates the rows in place
shard_embed = ddp and args.shard_embed
shard_rows = padded_vocab // h.world_size if shard_embed else padded_vocab  # rows per rank
shard_lo = h.rank * shard_rows if shard_embed else 0  # this rank's first row
if shard_embed:
    assert padded_vocab % h.world_size == 0, (padded_vocab, h.world_size)  # 64 | padded_vocab; ranks: 1, 2, 4
    embed_shard = torch.nn.Parameter(model.embed.weight.detach()[shard_lo: shard_lo + shard_rows])  # (shard_rows, C), a view
else:
    embed_shard = model.embed.weight
adamw_kwargs = dict(betas=(args.adam_beta1, args.adam_beta2), eps=1e-10, weight_decay=0.0, fused=on_cuda)
# two AdamWs, one for the embedding (its rows are gathered after it steps) and one for the rest:
# AdamW is elementwise, so splitting it changes no number
adamw_embed = torch.optim.AdamW([{"params": [embed_shard], "lr": args.embed_lr}], **adamw_kwargs)
adamw = torch.optim.AdamW(
    [{"params": [model.trunk.lm_head.weight], "lr": args.head_lr},
     {"params": gains, "lr": args.gain_lr}], **adamw_kwargs)
optimizers = [adamw_embed, adamw, muon]
if master:
    print(f"embedding: {shard_rows} of {padded_vocab} rows per rank (gradient and AdamW), "
          f"DDP gradients {'in' if args.bucket_view and ddp else 'copied to'} its buckets", flush=True)
side = torch.cuda.Stream() if on_cuda else None  # muon's stream (optimizer_step); also the warm-up's
use_graph = on_cuda and args.compile and args.cuda_graph
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
train_net = model
if ddp:
    # the harness started the process group (nccl on cuda, gloo on the cpu). DDP broadcasts rank 0's
    # weights (identical anyway: same seed) and all-reduces the gradients in buckets as the backward
    # produces them. the rotary tables are buffers computed from the config, the same on every
    # rank, so they are not re-broadcast before each forward (torch 2.13 renamed that switch).
    no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
                      else {"broadcast_buffers": False})
    # only the trunk: the embedding's gradient is exchanged by sync_embedding_grad()
    # built on the side stream, as torch's notes on capturing DDP ask
    if use_graph:
        side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side) if use_graph else nullcontext():
        train_net = DDP(model.trunk, device_ids=[torch.device(h.device).index] if on_cuda else None,
                        gradient_as_bucket_view=args.bucket_view, **no_buffer_sync)
    if args.grad_comm not in ("float16", "float32"):
        raise ValueError(f"grad_comm must be float16 or float32, not {args.grad_comm!r}")
    if on_cuda and args.grad_comm == "float16":
        # each bucket: divided by the ranks, cast to fp16, summed, cast back. the gradients are
        # loss-scaled: a sum past fp16's range is inf, and the step is skipped like any overflow
        train_net.register_comm_hook(None, default_hooks.fp16_compress_hook)
# compiled around DDP: dynamo splits the graph at DDP's buckets, so the all-reduces overlap the backward
train_forward = torch.compile(train_net) if args.compile else train_net
embed_grads = []  # under DDP: (ids (n,), grad at the trunk's input (n, C)) of each micro-step of the step


def micro_step_loss(x, y):
    """the micro-batch's mean loss, forward only (the caller scales it and runs the backward).
    under DDP the embedding rows are looked up outside the graph, as a leaf whose gradient the
    backward leaves in .grad for sync_embedding_grad()."""
    if not ddp:
        return train_forward(x, y)
    with torch.no_grad():
        emb = model.embed(x)  # (B, T, C) float32
    emb.requires_grad_(True)
    embed_grads.append((x, emb))
    return train_forward(emb, y)


def gather_embedding_rows():
    """under DDP: every rank's token ids and trunk-input gradients of the step, the same on every
    rank: (ids (ranks · n,) int64, grads (ranks · n, C) float32, loss-scaled)."""
    ids = torch.cat([x.reshape(-1) for x, _ in embed_grads])  # (n,) int64, this rank's tokens of the step
    grads = torch.cat([emb.grad.reshape(-1, cfg.n_embd) for _, emb in embed_grads])  # (n, C) float32, loss-scaled
    embed_grads.clear()
    all_ids = ids.new_empty(h.world_size * ids.numel())  # (ranks · n,)
    all_grads = grads.new_empty(h.world_size * ids.numel(), cfg.n_embd)  # (ranks · n, C)
    dist.all_gather_into_tensor(all_ids, ids)
    dist.all_gather_into_tensor(all_grads, grads)
    return all_ids, all_grads


def form_embedding_grad(all_ids, all_grads):
    """the gradient of this rank's embedding rows, the mean over every rank's tokens, from the
    gathered numbers with the embedding's own deterministic backward kernel. tokens of other
    ranks' rows are sent to one spare row past the shard, which is dropped: each kept row sums
    the same tokens, in the same order, as the whole embedding's gradient would."""
    ids = all_ids
    if shard_embed:
        ids = all_ids - shard_lo
        ids = torch.where((ids >= 0) & (ids < shard_rows), ids, shard_rows)  # (ranks · n,) in [0, shard_rows]
    grad = torch.ops.aten.embedding_dense_backward(all_grads, ids, shard_rows + shard_embed, -1, False)  # (rows (+1), C)
    embed_shard.grad = grad[:shard_rows].div_(h.world_size)  # DDP's mean over the ranks


def gather_embedding_shards(async_op: bool = False):
    """every rank's updated rows into every rank's embedding: the replicas' embeddings agree again.
    async_op: returns the collective's work (wait() before the embedding is read), else None."""
    if shard_embed:
        return dist.all_gather_into_tensor(model.embed.weight.data, embed_shard.detach().clone(), async_op=async_op)
    return None


def accumulate_only(last: bool):
    """DDP averages the gradients in the backward of a step's last micro-step; the ones before
    only accumulate on their own rank (no_sync), so a step all-reduces once."""
    return train_net.no_sync() if ddp and not last else nullcontext()


def next_micro_batch():
    """x, y: (micro_rows, seq_len) int64: `stack` consecutive slices of the global batches, stacked."""
    if stack == 1:
        return h.next_batch()
    xs, ys = zip(*(h.next_batch() for _ in range(stack)))
    return torch.cat(xs), torch.cat(ys)


def run_micro_steps(batches) -> torch.Tensor:
    """forward + backward of a step's micro-batches [(x, y), ...]: the gradients (DDP's all-reduce
    in the last one's backward) and the sum of the micro-batches' mean losses (0-d, on the device)."""
    loss_sum = torch.zeros((), device=h.device)
    for micro, (x, y) in enumerate(batches):
        with accumulate_only(micro == micro_steps - 1):
            with amp():
                loss = micro_step_loss(x, y)
            scaler.scale(loss / micro_steps).backward()
        loss_sum += loss.detach()
    return loss_sum


def forward(x):
    """(B, T) int64 -> logits (B, T, padded_vocab): pure inference, for the harness."""
    with amp():
        return model(x)


def optimizer_step():
    """unscale, then both optimizers step together, or neither when a gradient overflowed.
    returns the 0-d skip flag (1.0: skipped) without reading it back on cuda."""
    # every rank holds the same averaged gradients (and the same gathered embedding rows) here, so
    # the inf/nan flag agrees everywhere: all ranks step, or all skip. muon's update is scale-free:
    # it must see the true gradients
    if ddp:  # the embedding's rows are unscaled and checked before they are summed into its gradient
        all_ids, all_grads = gather_embedding_rows()
        found_inf = scaler.unscale([p for p in model.parameters() if p is not model.embed.weight], extra=[all_grads])
    else:
        found_inf = scaler.unscale(model.parameters())  # 0-d, stays on the device
    if on_cuda:
        for opt in optimizers:  # fused AdamW and our muon both skip on this flag, no sync
            opt.found_inf = found_inf
        # newton-schulz (matmuls) on a second stream while the embedding's backward and AdamW
        # (memory-bound) run on this one, then the gathers: they share the gpu instead of taking
        # turns. the side stream may start once the gradients are unscaled (it waits for this
        # stream as it is now); the embedding's all-gather is queued on the nccl stream before
        # newton-schulz's, so its rows cross while newton-schulz computes
        side.wait_stream(torch.cuda.current_stream())
        if ddp:
            form_embedding_grad(all_ids, all_grads)
        adamw_embed.step()
        rows_crossing = gather_embedding_shards(async_op=True)  # first on the nccl stream
        with torch.cuda.stream(side):
            pending = muon.launch()  # newton-schulz, then its gather, queued after the rows'
        adamw.step()  # the head and gains, beside both
        if rows_crossing is not None:
            rows_crossing.wait()  # this stream waits for the rows before the next step reads them
        torch.cuda.current_stream().wait_stream(side)
        muon.apply(pending)
        for opt in optimizers:
            del opt.found_inf
    else:
        if ddp:
            form_embedding_grad(all_ids, all_grads)
        if not found_inf:  # the cpu's AdamW is not fused and takes no flag; a sync costs nothing there
            for opt in optimizers:
                opt.step()
            gather_embedding_shards()
    scaler.update(found_inf)  # lowers the loss scale after an overflow
    if graph is None:
        model.zero_grad(set_to_none=True)
    elif ddp:  # the replay refills the gradients it allocated when it was captured: keep those
        embed_shard.grad = None  # formed afresh each step by form_embedding_grad
    return found_inf


# -- the micro-steps as one cuda graph (on cuda, compiled) -------------------------------------
# the graph reads its batches from these tensors: a step copies its batches in and replays it
static_batches = [tuple(torch.randint(0, h.vocab_size, (micro_rows, h.seq_len), device=h.device) for _ in range(2))
                  for _ in range(micro_steps)] if args.compile else []  # [(x, y)] * micro_steps, each (micro_rows, seq_len) int64
graph = None  # torch.cuda.CUDAGraph once captured
graph_loss_sum = None  # the graph's output: the sum of the micro-batches' mean losses (0-d)
graph_embed_grads = []  # under DDP: the graph's (ids, embedding-row leaf) pairs, whose .grad it refills
WARMUP_STEPS = 11 if use_graph else 1  # DDP times its first 10 iterations: none of those may be captured

if args.compile:
    # untimed: compile forward + backward on random tokens and take optimizer steps, so the first
    # timed step finds every kernel loaded, then capture the graph; the harness restores all state after
    with h.warmup(model, *optimizers, scaler):  # the embedding's shard is a view of model.embed: restored with it
        # the step's micro-steps (under DDP the last all-reduces, which also sets up the
        # communicators) and an optimizer step (muon's all-gathers) before the clock starts.
        # x is never y (separate tensors): the compiled graph guards on aliasing
        if use_graph:  # warmed up on a side stream before a capture, as torch's notes ask
            side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side) if use_graph else nullcontext():
            for _ in range(WARMUP_STEPS):
                run_micro_steps(static_batches)
                optimizer_step()
        if use_graph:
            torch.cuda.current_stream().wait_stream(side)
            torch.cuda.synchronize()
            # the captured backward allocates the gradients, and each replay writes them afresh
            model.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                graph_loss_sum = run_micro_steps(static_batches)
            graph_embed_grads = list(embed_grads)
            embed_grads.clear()
            graph.replay()  # once, untimed: the first replay uploads the graph
            torch.cuda.synchronize()

# -- training --------------------------------------------------------------------------------
skipped = torch.zeros((), device=h.device)  # steps skipped because the fp16 gradients overflowed
for step in range(1, h.steps + 1):
    factor = lr_factor(step)
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["peak_lr"] * factor
    batches = [next_micro_batch() for _ in range(micro_steps)]  # [(x, y)], each (micro_rows, T)
    if graph is None:
        loss_sum = run_micro_steps(batches)
    else:
        for (x, y), (sx, sy) in zip(batches, static_batches):
            sx.copy_(x)
            sy.copy_(y)
        graph.replay()  # forward + backward of every micro-step, the all-reduce included
        embed_grads.extend(graph_embed_grads)
        loss_sum = graph_loss_sum  # rewritten by the next replay, read before it
    skipped += optimizer_step()
    if step % args.eval_every and step < h.steps:
        continue  # no readback: the host runs ahead and the gpu never waits for it
    # a logged step: the host waits here anyway (the evaluation follows)
    train_loss = loss_sum / micro_steps  # this rank's mean over its tokens of the step
    if ddp:  # the mean over every token of the step, as one gpu logs it (sum: gloo has no AVG)
        dist.all_reduce(train_loss)
        train_loss /= h.world_size
    h.log_step(step, train_loss.item())
    if step < h.steps:
        h.evaluate(forward, step, val_tokens=args.eval_tokens)

if skipped.item() and master:
    print(f"fp16: skipped {int(skipped.item())} of {h.steps} optimizer steps (gradient overflow)", flush=True)
h.finish(forward)  # every rank: the evaluation is sharded over the ranks and all-reduced

# -- the replicas must end identical: each rank evaluated its share of the windows on its own ---
# same start, same averaged gradients, same kernels: the parameters should agree bit for bit.
# untimed (after finish). a rank that skipped a step or saw other gradients is off by whole
# updates (~1e-2 relative) and fails the run; float rounding alone (a nondeterministic kernel)
# would be ~1e-7 and is only reported.
REPLICA_RTOL = 1e-5  # largest difference between ranks, relative to the tensor's |sum| or sum of squares
with torch.no_grad():
    sums = torch.stack([torch.stack([p.sum(dtype=torch.float64), p.square().sum(dtype=torch.float64),
                                     p.abs().sum(dtype=torch.float64)]) for p in model.parameters()])  # (n_tensors, 3)
high, low = sums.clone(), sums.clone()
if ddp:
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
diff = high - low  # (n_tensors, 3)
gap = torch.maximum(diff[:, 0] / high[:, 2].clamp_min(1e-30),  # the sum, against the sum of |p|
                    diff[:, 1] / high[:, 1].clamp_min(1e-30)).max().item()  # the sum of squares, against itself
verdict = "identical" if gap == 0 else "not bit-identical, within rounding" if gap <= REPLICA_RTOL else "DIFFERENT"
if master:
    print(f"replicas: {h.world_size} rank(s), parameter checksum {sums[:, 0].sum().item():.12e}, "
          f"largest relative difference between ranks {gap:.3g} -> {verdict}", flush=True)
# the graph holds its captured all-reduces: with it alive, the process group's teardown after the
# record waits forever (a 2- and a 4-gpu run on h200s hung there after completing). release it first
if graph is not None:
    torch.cuda.synchronize()
    graph.reset()
    graph = None
if gap > REPLICA_RTOL:
    raise RuntimeError(f"the {h.world_size} replicas ended with different parameters (relative difference {gap:.3g})")
