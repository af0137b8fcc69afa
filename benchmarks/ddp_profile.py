"""where a data-parallel training step's time goes, per rank count, for the data-parallel records.

    torchrun --standalone --nproc_per_node N benchmarks/ddp_profile.py --out ddp-profile-nN.json
    python benchmarks/ddp_profile.py --summary ddp-profile-n*.json --runs gpu-runs   # markdown tables

each record's step is rebuilt here from its own model.py and optim.py, the way its train.py
runs it (the records themselves only run inside the harness):

  dense_muon_t4_ddp     DDP around the compiled model; 8-row micro-batches (4 per step on one
                        gpu, 1 on four); every rank runs newton-schulz on every matrix; the
                        overflow check and GradScaler.step read flags back on the host
  dense_muon_t4_ddp_v2  the compiled model around DDP (bucketed all-reduce during the backward);
                        micro-batches of up to 16 rows; each rank orthogonalises its share of
                        the matrices and all-gathers the updates; the skip decided on the device
  dense_muon_t4_ddp_v3  v2's step with the trunk in DDP (fp16 gradient buckets), the embedding's
                        gradient formed from all-gathered trunk-input gradients, newton-schulz
                        dealt by cost with one gather that runs while AdamW steps, and no
                        readback but at evaluations (its steps are timed 10 at a time)
  dense_muon_t4_ddp_v4  v3's step with its micro-steps' forward + backward replayed as a cuda
                        graph (captured after 11 eager steps; the compute-only step has a graph
                        of its own, without the all-reduce), the gathered embedding rows
                        unscaled before they are summed, and the embedding's backward beside
                        newton-schulz
  dense_muon_t4_ddp_v5  v4's step with the embedding's rows shared by the ranks (each forms the
                        gradient of its rows and steps them, then the rows are all-gathered) and
                        DDP's gradients as views into its buckets; --v5-knobs profiles variants
                        with either switched off (shard_embed=0, bucket_view=0)
  dense_muon_t4_ddp_v6  v5's step with the embedding's rows all-gathered asynchronously, queued on
                        the nccl stream before newton-schulz's gather (its "AdamW beside
                        Newton–Schulz" phase ends when the rows have arrived)

the phases of a step are timed with cuda events on the training stream, so a phase includes
the time the gpu waited in it (for the host after a sync, or for a collective):

  forward_backward  all micro-steps, including the part of the gradient all-reduce the backward
                    did not hide (DDP makes the stream wait for its buckets at the end)
  unscale_norm      GradScaler.unscale_ of both optimizers and the gradient norm
  adamw             the fused AdamW step (embedding, head, gains)
  muon              dense_muon_t4_ddp: momentum + newton-schulz on every matrix, applied
  muon_ns           v2: momentum + newton-schulz on this rank's share, gathers started
  adamw_beside_muon_ns  v3: AdamW on the training stream while muon's share runs on a second stream
  muon_gather       v2, v3: waiting for the gathers (v3: and for the second stream), every update added
  embed_gather      v3: the trunk-input gradients and ids all-gathered, the embedding's gradient formed
  rest              scaler update, zero_grad, the train loss all-reduced and read back

between two full steps a compute-only step runs the same micro-steps with DDP's all-reduce
switched off (no_sync): forward_backward minus that is the communication the backward did not
hide (`exposed_comm`). a phase's figure is the median over the timed steps on each rank, then the
largest over the ranks (the slowest rank sets the pace). the step time is the host's wall time of
a whole step (every step ends with the loss readback, as in the records), tokens/s is the step's
32,768 tokens over it. batches are random tokens. also timed alone: one all-reduce of the full
fp32 gradient volume and one all-gather of v2's fp16 update volume. --dry-run runs tiny sizes on
the cpu (gloo) to test the script; its numbers mean nothing."""
from __future__ import annotations

import argparse
import gc
import importlib.util
import inspect
import json
import math
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RECORDS = {  # name -> (batch_size, grad_accum): each record's full scale, 32 x 1024 tokens a step
    "dense_muon_t4_ddp": (8, 4),
    "dense_muon_t4_ddp_v2": (16, 2),
    "dense_muon_t4_ddp_v3": (16, 2),
    "dense_muon_t4_ddp_v4": (16, 2),
    "dense_muon_t4_ddp_v5": (16, 2),
    "dense_muon_t4_ddp_v6": (16, 2),
}
# steps timed together: these read the loss back every 10th step only
BLOCK = {"dense_muon_t4_ddp_v3": 10, "dense_muon_t4_ddp_v4": 10, "dense_muon_t4_ddp_v5": 10, "dense_muon_t4_ddp_v6": 10}
EAGER_BEFORE_GRAPH = 11  # v4: DDP times its first 10 iterations, which must not be captured


def load(record: str, module: str):
    """a record's own model.py / optim.py, under a name of its own (both records have both)."""
    spec = importlib.util.spec_from_file_location(f"{record}_{module}", REPO / "records" / record / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def record_optimizers(optim_mod, model, blocks, head, cuda: bool, shard: dict, capturable: bool = False, embed_apart=None):
    """the records' muon (lr 0.02 on the blocks' matrices) and AdamW (embedding 0.3, head 0.008,
    gains 0.04), from the record's own optim.py: (muon, adamw, None). capturable: an AdamW whose
    step a cuda graph can hold. embed_apart (v5, v6: this rank's embedding rows): stepped by an
    AdamW of its own, returned third; the other keeps the head and gains (AdamW is elementwise)."""
    hidden = [p for p in blocks.parameters() if p.dim() == 2]
    gains = [p for p in model.parameters() if p.dim() < 2]
    muon = optim_mod.Muon(hidden, lr=0.02, momentum=0.95, ns_dtype=torch.float16 if cuda else torch.float32, **shard)
    kw = {"betas": (0.8, 0.95), "eps": 1e-10, "weight_decay": 0.0, "fused": cuda, **({"capturable": True} if capturable else {})}
    rest = [{"params": [head.weight], "lr": 0.008}, {"params": gains, "lr": 0.04}]
    if embed_apart is None:
        return muon, torch.optim.AdamW([{"params": [model.embed.weight], "lr": 0.3}, *rest], **kw), None
    return muon, torch.optim.AdamW(rest, **kw), torch.optim.AdamW([{"params": [embed_apart], "lr": 0.3}], **kw)


def layout(record: str, batch_size: int, grad_accum: int, world: int) -> tuple[int, int]:
    """(micro_steps, micro_rows) per rank, as the record's train.py cuts a step."""
    local = batch_size // world
    if record == "dense_muon_t4_ddp":
        stack = world if grad_accum % world == 0 else 1
    else:
        stack = max(d for d in range(1, grad_accum + 1) if grad_accum % d == 0 and d * local <= batch_size)
    return grad_accum // stack, local * stack


class Marks:
    """named points on the training stream (cuda events; the host clock on the cpu)."""

    def __init__(self, cuda: bool):
        self.cuda, self.points = cuda, []

    def mark(self, name: str) -> None:
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            self.points.append((name, e))
        else:
            self.points.append((name, time.perf_counter()))

    def phases_ms(self) -> dict[str, float]:
        """ms from each mark to the next, under the later mark's name (call after a sync)."""
        out = {}
        for (_, a), (name, b) in zip(self.points, self.points[1:]):
            out[name] = a.elapsed_time(b) if self.cuda else (b - a) * 1000
        return out


class Trainer:
    """one record's model, optimizers and step, on this rank."""

    def __init__(self, record: str, cfg_kwargs: dict, seq_len: int, device: str, world: int, rank: int, compile_model: bool,
                 knobs: dict | None = None):
        from torch.nn.parallel import DistributedDataParallel as DDP

        self.record, self.device, self.world = record, device, world
        self.v6 = record.endswith("_v6")
        self.v5 = record.endswith("_v5") or self.v6  # v6 keeps v5's shared embedding rows
        knobs = {"shard_embed": 1, "bucket_view": 1} | (knobs or {}) if self.v5 else {}
        self.v4 = record.endswith("_v4") or self.v5  # v5 keeps v4's graph
        self.v3 = record.endswith("_v3") or self.v4  # v4 keeps v3's exchange of gradients
        self.v2 = record.endswith("_v2") or self.v3  # v3 keeps v2's shape of a step
        model_mod, optim_mod = load(record, "model"), load(record, "optim")
        torch.manual_seed(0)  # the same replica on every rank
        self.model = model = model_mod.GPT(model_mod.GPTConfig(**cfg_kwargs)).to(device)
        blocks, head = (model.trunk.blocks, model.trunk.lm_head) if self.v3 else (model.blocks, model.lm_head)
        self.embed_grads = []
        self.cuda = device.startswith("cuda")
        batch_size, grad_accum = RECORDS[record]
        self.micro_steps, self.micro_rows = layout(record, batch_size, grad_accum, world)
        shard = {"rank": rank, "world_size": world} if self.v2 else {}
        # the embedding's rows this rank forms the gradient of: all of them, or (v5, sharded) a
        # contiguous 1/world, a view of the embedding with an AdamW of its own
        self.shard_embed = bool(knobs.get("shard_embed")) and world > 1
        self.shard_rows = cfg_kwargs["vocab_size"] // (world if self.shard_embed else 1)
        self.shard_lo = rank * self.shard_rows if self.shard_embed else 0
        self.embed_param = model.embed.weight
        if self.shard_embed:
            self.embed_param = torch.nn.Parameter(model.embed.weight.detach()[self.shard_lo: self.shard_lo + self.shard_rows])
        self.muon, self.adamw, self.adamw_embed = record_optimizers(optim_mod, model, blocks, head, self.cuda, shard,
                                                                   embed_apart=self.embed_param if self.v5 else None)
        self.optimizers = [o for o in (self.adamw_embed, self.adamw, self.muon) if o is not None]
        self.scaler = (optim_mod.LossScaler(device, enabled=self.cuda) if self.v3
                       else torch.amp.GradScaler("cuda", enabled=self.cuda))
        self.side = torch.cuda.Stream() if self.cuda else None
        self.graphed = self.v4 and self.cuda and compile_model
        self.graphs, self.eager_iters = {}, 0  # v4: comm (True / False) -> (graph, loss_sum, embed leaves)
        ddp_kwargs = {"device_ids": [torch.device(device).index]} if self.cuda else {}
        if world == 1:
            self.net = model
            self.fwd = torch.compile(model) if compile_model else model
        elif self.v3:  # the trunk only, fp16 buckets, compiled around DDP
            from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

            # as the record: the buffer switch torch 2.13 renamed
            no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
                       else {"broadcast_buffers": False})
            if self.graphed:  # as the record: DDP built on a side stream before a capture
                self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side) if self.graphed else nullcontext():
                self.net = DDP(model.trunk, **no_sync, **ddp_kwargs,
                               **({"gradient_as_bucket_view": bool(knobs["bucket_view"])} if self.v5 else {}))
            if self.cuda:
                self.net.register_comm_hook(None, default_hooks.fp16_compress_hook)
            self.fwd = torch.compile(self.net) if compile_model else self.net
        elif self.v2:  # compile around DDP: the all-reduce overlaps the backward
            self.net = DDP(model, broadcast_buffers=False, **ddp_kwargs)
            self.fwd = torch.compile(self.net) if compile_model else self.net
        else:  # DDP around the compiled model
            self.net = DDP(torch.compile(model) if compile_model else model, broadcast_buffers=False, **ddp_kwargs)
            self.fwd = self.net
        g = torch.Generator().manual_seed(1000 + rank)
        vocab = cfg_kwargs["real_vocab_size"]
        self.batches = [torch.randint(0, vocab, (self.micro_rows, seq_len + 1), generator=g).to(device) for _ in range(self.micro_steps)]

    def amp(self):
        if not self.cuda:
            return nullcontext()
        return torch.autocast("cuda", dtype=torch.float16, cache_enabled=not self.v4)  # v4: no cast cache (graphs)

    def micro_steps_run(self, marks: Marks, comm: bool) -> torch.Tensor:
        if not self.graphed:
            return self.micro_steps_eager(marks, comm)
        if self.eager_iters < EAGER_BEFORE_GRAPH:  # as the record's warm-up: on the side stream DDP was built on
            self.eager_iters += comm  # DDP counts the iterations that all-reduce
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                loss_sum = self.micro_steps_eager(marks, comm)
            torch.cuda.current_stream().wait_stream(self.side)
            return loss_sum
        if comm not in self.graphs:  # captured once per kind of step: the gradients it writes stay
            torch.cuda.synchronize()
            if not self.graphs:  # the first capture allocates the gradients; a second accumulates into them
                self.model.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                loss_sum = self.micro_steps_eager(Marks(False), comm)
            self.graphs[comm] = (graph, loss_sum, list(self.embed_grads))
            self.embed_grads.clear()
        graph, loss_sum, leaves = self.graphs[comm]
        graph.replay()
        self.embed_grads[:] = leaves
        marks.mark("forward_backward")
        return loss_sum

    def micro_steps_eager(self, marks: Marks, comm: bool) -> torch.Tensor:
        loss_sum = torch.zeros((), device=self.device)
        for i, batch in enumerate(self.batches):
            x, y = batch[:, :-1], batch[:, 1:]
            last = i == len(self.batches) - 1
            sync_off = self.world > 1 and not (comm and last)
            with self.net.no_sync() if sync_off else nullcontext():
                with self.amp():
                    if self.v3 and self.world > 1:  # the embedding outside DDP, its output a leaf
                        with torch.no_grad():
                            emb = self.model.embed(x)
                        emb.requires_grad_(True)
                        self.embed_grads.append((x, emb))
                        loss = self.fwd(emb, y)
                    else:
                        loss = self.fwd(x, y)
                self.scaler.scale(loss / self.micro_steps).backward()
            loss_sum += loss.detach()
        marks.mark("forward_backward")
        return loss_sum

    def gather_embedding_rows(self):
        """v3's and v4's train.py: everyone's token ids and trunk-input gradients, gathered."""
        import torch.distributed as dist

        ids = torch.cat([x.reshape(-1) for x, _ in self.embed_grads])
        grads = torch.cat([e.grad.reshape(ids.numel(), -1) for _, e in self.embed_grads])
        self.embed_grads.clear()
        all_ids = ids.new_empty(self.world * ids.numel())
        all_grads = grads.new_empty(self.world * ids.numel(), grads.size(1))
        dist.all_gather_into_tensor(all_ids, ids)
        dist.all_gather_into_tensor(all_grads, grads)
        return all_ids, all_grads

    def form_embedding_grad(self, all_ids, all_grads) -> None:
        """the gradient of this rank's embedding rows (v3, v4: all of them); v5 sharded: other
        rows' tokens go to a spare row past the shard, which is dropped."""
        ids = all_ids
        if self.shard_embed:
            ids = all_ids - self.shard_lo
            ids = torch.where((ids >= 0) & (ids < self.shard_rows), ids, self.shard_rows)
        grad = torch.ops.aten.embedding_dense_backward(all_grads, ids, self.shard_rows + self.shard_embed, -1, False)
        self.embed_param.grad = grad[:self.shard_rows].div_(self.world)

    def update_embedding(self, rows, async_op: bool = False):
        """v4 on: the embedding's gradient formed from the gathered rows (None on one rank); v5 on:
        AdamW on this rank's rows, then every rank's rows gathered into every embedding (v6:
        asynchronously, the collective's work returned; else None)."""
        import torch.distributed as dist

        if rows is not None:
            self.form_embedding_grad(*rows)
        if not self.v5:
            return None  # v4: the embedding steps with the head and gains
        self.adamw_embed.step()
        if self.shard_embed:
            return dist.all_gather_into_tensor(self.model.embed.weight.data, self.embed_param.detach().clone(), async_op=async_op)
        return None

    def optimizer_step_v3(self, marks: Marks) -> None:
        """one pass to unscale; newton-schulz on a second stream while AdamW steps; the scale updated.
        under DDP v3 forms the embedding's gradient first; v4 gathers the rows, unscales them with
        the trunk's gradients and forms the embedding's gradient beside newton-schulz."""
        rows = None
        if self.world > 1:
            rows = self.gather_embedding_rows()
            if not self.v4:
                self.form_embedding_grad(*rows)
            marks.mark("embed_gather")
        if self.v4 and rows is not None:
            weight = self.model.embed.weight
            found_inf = self.scaler.unscale([p for p in self.model.parameters() if p is not weight], extra=[rows[1]])
        else:
            found_inf = self.scaler.unscale(self.model.parameters())
        marks.mark("unscale_norm")
        crossing = None  # v6: the embedding's rows, all-gathering
        if self.cuda:
            for opt in self.optimizers:
                opt.found_inf = found_inf
            self.side.wait_stream(torch.cuda.current_stream())
        if self.v6:  # the rows' gather queued on the nccl stream before newton-schulz's
            crossing = self.update_embedding(rows, async_op=True)
        with torch.cuda.stream(self.side) if self.cuda else nullcontext():
            pending = self.muon.launch()
        if self.v4 and not self.v6:  # v4, v5: beside newton-schulz, after it was queued
            self.update_embedding(rows)
        self.adamw.step()
        if crossing is not None:
            crossing.wait()
        marks.mark("adamw_beside_muon_ns")
        if self.cuda:
            torch.cuda.current_stream().wait_stream(self.side)
        self.muon.apply(pending)
        marks.mark("muon_gather")
        self.scaler.update(found_inf)
        for opt in self.optimizers:
            opt.__dict__.pop("found_inf", None)

    def optimizer_step_v1_v2(self, marks: Marks) -> None:
        """GradScaler.unscale_ per optimizer and a norm for the flag, then v2's or v1's steps."""
        for opt in self.optimizers:
            self.scaler.unscale_(opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), float("inf"))
        marks.mark("unscale_norm")
        if self.v2:
            found_inf = (~torch.isfinite(grad_norm)).float()
            if self.cuda:
                self.adamw.found_inf = self.muon.found_inf = found_inf
            self.adamw.step()
            marks.mark("adamw")
            pending = self.muon.launch()
            marks.mark("muon_ns")
            self.muon.apply(pending)
            marks.mark("muon_gather")
            for opt in self.optimizers:
                opt.__dict__.pop("found_inf", None)
        elif torch.isfinite(grad_norm):  # the parent's host-side check
            self.scaler.step(self.adamw)
            marks.mark("adamw")
            self.scaler.step(self.muon)
            marks.mark("muon")
        self.scaler.update()

    def step(self, readback: bool = True) -> Marks:
        """one full training step; its marks (read them after a sync)."""
        import torch.distributed as dist

        marks = Marks(self.cuda)
        marks.mark("start")
        loss_sum = self.micro_steps_run(marks, comm=True)
        if self.v3:
            self.optimizer_step_v3(marks)
        else:
            self.optimizer_step_v1_v2(marks)
        if self.graphs:  # v4: the replays refill the gradients their capture allocated
            self.embed_param.grad = None  # formed afresh each step
        else:
            self.model.zero_grad(set_to_none=True)
        train_loss = loss_sum / self.micro_steps
        if readback:
            if self.world > 1:
                dist.all_reduce(train_loss)
            train_loss.item()
        marks.mark("rest")
        return marks

    def compute_only(self) -> float:
        """the same micro-steps without any all-reduce; ms of forward + backward."""
        marks = Marks(self.cuda)
        marks.mark("start")
        self.micro_steps_run(marks, comm=False)
        self.embed_grads.clear()
        if self.cuda:
            torch.cuda.synchronize()
        if not self.graphs:
            self.model.zero_grad(set_to_none=True)
        return marks.phases_ms()["forward_backward"]


def comm_alone(n_grad: int, n_gather: int, device: str, repeats: int) -> dict:
    """ms of one all-reduce of n_grad fp32 values and one all-gather into n_gather values (fp16 on cuda)."""
    import torch.distributed as dist

    world = dist.get_world_size()
    out = {}
    grads = torch.ones(n_grad, device=device)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    share = torch.ones(n_gather // world, dtype=dtype, device=device)
    gathered = torch.empty(share.numel() * world, dtype=dtype, device=device)
    for name, op, nbytes in (("allreduce_grads", lambda: dist.all_reduce(grads), grads.numel() * 4),
                             ("allgather_updates", lambda: dist.all_gather_into_tensor(gathered, share), gathered.numel() * gathered.element_size())):
        times = []
        for i in range(repeats + 2):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            dist.barrier()
            t0 = time.perf_counter()
            op()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i >= 2:
                times.append((time.perf_counter() - t0) * 1000)
        out[name] = {"ms": statistics.median(times), "bytes": nbytes}
    return out


def write_trace(tr: Trainer, block: int, path: Path | None, cuda: bool, timeline: bool = False) -> dict | None:
    """torch.profiler over one block of steps on this rank: the kernels by device time, and how
    busy the device was (sum of kernel time over the wall time). timeline: also the chrome trace
    (gzipped, next to the table) and how much of the collectives' time other kernels overlapped
    (benchmarks/trace_overlap.py), which is returned."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    steps = max(block, 3)
    with torch_profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for i in range(steps):
            tr.step(readback=i == steps - 1 or block == 1)
        if cuda:
            torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - t0) * 1000
    if path is None:
        return None
    found = None
    if timeline:
        import gzip

        from trace_overlap import overlap, trace_events

        raw = path.with_suffix(".timeline.json")
        prof.export_chrome_trace(str(raw))
        data = raw.read_bytes()  # read once: kept gzipped, measured from memory
        raw.unlink()
        Path(f"{raw}.gz").write_bytes(gzip.compress(data))
        found = overlap(trace_events(json.loads(data)), steps)
    events = prof.key_averages()
    busy_ms = sum(e.self_device_time_total for e in events) / 1000 if cuda else float("nan")
    head = f"{steps} steps, wall {wall_ms:.2f} ms, kernels {busy_ms:.2f} ms ({busy_ms / wall_ms:.0%} busy, streams summed)\n"
    path.write_text(head + events.table(sort_by="self_device_time_total" if cuda else "self_cpu_time_total", row_limit=45) + "\n")
    return found


def profile(args) -> dict:
    import torch.distributed as dist

    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    cuda = torch.cuda.is_available() and not args.dry_run
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", world_size=world, rank=rank,
                            **({"device_id": torch.device(device)} if cuda else {}))
    if args.dry_run:
        cfg = dict(vocab_size=512, real_vocab_size=500, n_layer=2, n_head=2, n_embd=32, max_seq_len=32)
        seq_len, rounds, warm = 32, args.rounds or 2, 1
    else:
        cfg = dict(vocab_size=100352, real_vocab_size=100277, n_layer=6, n_head=6, n_embd=768, max_seq_len=1024)
        seq_len, rounds, warm = 1024, args.rounds or 20, 3
    warm_graphed = EAGER_BEFORE_GRAPH + 2  # v4 on cuda: 11 eager steps, then a round that captures both graphs, then one replaying them
    result = {"ranks": world, "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
              "dry_run": args.dry_run, "rounds": rounds, "records": {}}
    runs = [(r, None) for r in args.records if not (r.endswith("_v5") and args.v5_knobs)]
    if "dense_muon_t4_ddp_v5" in args.records:
        runs += [("dense_muon_t4_ddp_v5", parse_knobs(k)) for k in args.v5_knobs or []]
    for record, knobs in runs:
        tr = Trainer(record, cfg, seq_len, device, world, rank, compile_model=cuda, knobs=knobs)
        label = record + (" " + ",".join(f"{k}={v}" for k, v in knobs.items()) if knobs else "")
        block = BLOCK.get(record, 1)
        for _ in range(warm_graphed if tr.graphed else warm):  # compiles, first kernel loads, optimizer state (v4: its graphs)
            tr.step()
            tr.compute_only()
        phases, walls, compute = [], [], []
        for _ in range(rounds):  # full and compute-only steps take turns (the gpu's clocks drift)
            t0 = time.perf_counter()
            marks = [tr.step(readback=i == block - 1) for i in range(block)]  # the record's readbacks
            if cuda:
                torch.cuda.synchronize()
            walls.append((time.perf_counter() - t0) * 1000 / block)
            phases += [m.phases_ms() for m in marks]
            compute.append(tr.compute_only())
        timeline = None
        if args.trace or args.timeline:  # every rank steps (the collectives need them all); rank 0 writes
            timeline = write_trace(tr, block, Path(args.out).with_suffix(f".{label.replace(' ', '.')}.trace.txt") if rank == 0 else None,
                                   cuda, timeline=args.timeline)
        mine = {"step_ms": statistics.median(walls), "compute_ms": statistics.median(compute),
                "phases_ms": {k: statistics.median(p.get(k, 0.0) for p in phases) for k in phases[-1]}}
        everyone = [None] * world
        dist.all_gather_object(everyone, mine)
        step_ms = max(r["step_ms"] for r in everyone)
        phases_ms = {k: max(r["phases_ms"][k] for r in everyone) for k in mine["phases_ms"]}
        compute_ms = max(r["compute_ms"] for r in everyone)
        tokens = RECORDS[record][0] * RECORDS[record][1] * seq_len
        result["records"][label] = {
            "micro_steps": tr.micro_steps, "micro_rows": tr.micro_rows, "steps_timed_together": block,
            "step_ms": step_ms, "tokens_per_s": tokens / step_ms * 1000,
            "phases_ms": phases_ms, "compute_only_ms": compute_ms,
            "exposed_comm_ms": max(0.0, phases_ms["forward_backward"] - compute_ms) if world > 1 else 0.0,
            "timeline_rank0": timeline,  # --timeline: comm, hidden, exposed, compute, idle ms a step on rank 0's gpu
            "per_rank": everyone}
        n_grad = sum(p.numel() for p in tr.model.parameters())
        shapes = {}
        for p in tr.muon.param_groups[0]["params"]:
            shapes.setdefault(tuple(p.shape), []).append(p)
        n_gather = sum(math.ceil(len(ps) / world) * world * math.prod(s) for s, ps in shapes.items())
        for graph, *_ in tr.graphs.values():  # v4: its captured all-reduces released before the group goes
            graph.reset()
        del tr
        gc.collect()  # the DDP reducer holds the process group: gone before the next record and the teardown
        if cuda:
            torch.cuda.empty_cache()
    if world > 1:
        result["comm_alone"] = comm_alone(n_grad, n_gather, device, repeats=3 if args.dry_run else 10)
    if rank == 0:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "records"}), flush=True)
        for name, r in result["records"].items():
            print(f"{name} x{world}: step {r['step_ms']:.2f} ms, {r['tokens_per_s']:,.0f} tokens/s, "
                  + ", ".join(f"{k} {v:.2f}" for k, v in r["phases_ms"].items()) + f", exposed comm {r['exposed_comm_ms']:.2f}", flush=True)
    dist.barrier()
    dist.destroy_process_group()
    return result


def parse_knobs(text: str) -> dict:
    """'shard_embed=0,bucket_view=1' -> {'shard_embed': 0, 'bucket_view': 1} (v5's switches)."""
    out = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in ("shard_embed", "bucket_view") or value not in ("0", "1"):
            raise SystemExit(f"--v5-knobs: {part!r} is not shard_embed=0|1 or bucket_view=0|1")
        out[key] = int(value)
    return out


def summary(files: list[str], runs_dir: str | None) -> str:
    """markdown: the harness runs (if given) and the profile, speed-up against each record's 1-rank row."""
    lines = []
    if runs_dir:
        rows = []
        for p in sorted(Path(runs_dir).glob("*/result.json")):
            r = json.loads(p.read_text())
            log = (p.parent / "log.txt").read_text(errors="replace") if (p.parent / "log.txt").exists() else ""
            replicas = next((ln.rsplit("-> ", 1)[-1] for ln in log.splitlines() if ln.startswith("replicas:")), "")
            rows.append(r | {"replicas": replicas})
        base = {}  # each record and scale's first completed 1-rank run
        for r in sorted(rows, key=lambda r: r["started_at"]):
            if r["nproc"] == 1 and r["status"] == "completed":
                base.setdefault((r["record"], r["scale"]), r["train_time_ms"])
        lines += ["| record | ranks | label | class | status | train s | tokens/s | speed-up | efficiency | val loss | tokens | replicas |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(rows, key=lambda r: (r["record"], r["scale"], r["nproc"], r["started_at"])):
            t = r["train_time_ms"] or float("nan")
            up = base.get((r["record"], r["scale"]), float("nan")) / t
            lines.append(f"| {r['record']} | {r['nproc']} | {r['hardware_label']} | {r['class']} | {r['status']} | {t / 1000:.2f} | "
                         f"{(r['tokens'] or 0) / t * 1000:,.0f} | {up:.2f}× | {up / r['nproc']:.0%} | {r['val_loss']} | {r['tokens']} | {r['replicas']} |")
        lines.append("")
    profs = sorted((json.loads(Path(f).read_text()) for f in files if Path(f).is_file()), key=lambda p: p["ranks"])
    one = {name: r["step_ms"] for p in profs if p["ranks"] == 1 for name, r in p["records"].items()}
    order = ["forward_backward", "embed_gather", "unscale_norm", "adamw", "muon", "muon_ns", "adamw_beside_muon_ns", "muon_gather", "rest"]
    seen = {k for p in profs for r in p["records"].values() for k in r["phases_ms"]}
    phase_names = [k for k in order if k in seen] + sorted(seen - set(order))
    lines += ["| record | ranks | micro-steps × rows | step ms | tokens/s | speed-up | efficiency | " + " | ".join(phase_names) + " | exposed comm |",
              "|---|---|---|---|---|---|---|" + "---|" * (len(phase_names) + 1)]
    for p in profs:
        for name, r in p["records"].items():
            up = one[name] / r["step_ms"] if name in one else None  # no 1-rank profile of it: no speed-up
            speed = f"{up:.2f}× | {up / p['ranks']:.0%}" if up else "— | —"
            cells = " | ".join(f"{r['phases_ms'][k]:.2f}" if k in r["phases_ms"] else "" for k in phase_names)
            lines.append(f"| {name} | {p['ranks']} | {r['micro_steps']} × {r['micro_rows']} | {r['step_ms']:.2f} | {r['tokens_per_s']:,.0f} | "
                         f"{speed} | {cells} | {r['exposed_comm_ms']:.2f} |")
    for p in profs:  # --timeline: rank 0's gpu, from its chrome trace
        for name, r in p["records"].items():
            t = r.get("timeline_rank0")
            if t:
                lines.append(f"\n{p['ranks']} ranks, {name}, rank 0's gpu a step: communication {t['comm_ms']:.2f} ms "
                             f"({t['hidden_ms']:.2f} beside other kernels, {t['exposed_ms']:.2f} alone), "
                             f"compute {t['compute_ms']:.2f} ms, idle {t['idle_ms']:.2f} ms")
    for p in profs:
        for name, c in (p.get("comm_alone") or {}).items():
            lines.append(f"\n{p['ranks']} ranks, {name} alone: {c['bytes'] / 1e6:.0f} MB in {c['ms']:.2f} ms")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="ddp-profile.json", help="JSON written by rank 0")
    ap.add_argument("--rounds", type=int, default=0, help="timed steps per record (default 20; 2 with --dry-run)")
    ap.add_argument("--records", nargs="+", default=list(RECORDS), choices=list(RECORDS))
    ap.add_argument("--v5-knobs", nargs="+", metavar="KNOBS",
                    help="profile dense_muon_t4_ddp_v5 once per KNOBS, e.g. shard_embed=1,bucket_view=1 shard_embed=0")
    ap.add_argument("--trace", action="store_true", help="also write a torch.profiler kernel table per record (rank 0)")
    ap.add_argument("--timeline", action="store_true",
                    help="also a chrome trace per record (rank 0, gzipped) and how much communication it overlapped with compute")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the cpu (gloo): tests the script")
    ap.add_argument("--summary", nargs="+", metavar="JSON", help="print markdown tables from profile JSONs instead of profiling")
    ap.add_argument("--runs", help="with --summary: a folder of run folders (result.json) to tabulate too")
    args = ap.parse_args()
    if args.summary:
        print(summary(args.summary, args.runs))
    else:
        profile(args)
        # everything is written and the process group destroyed. on the cpu (gloo) a process that
        # profiled v3 aborts in torch's own teardown in about 1 run of 5 ("terminate called
        # without an active exception", after main returned; not seen on the gpus): end without it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
