"""is a small data-parallel step bound by the gpu or by the host that launches it?

    python benchmarks/step_overhead.py --out step-overhead.json     # one cuda gpu
    python benchmarks/step_overhead.py --dry-run                    # tiny sizes on the cpu: tests the script

on 4 gpus dense_muon_t4_ddp_v3's forward + backward of 8 rows takes 17.5-19.5 ms without any
communication, against 14.7 ms if the one-gpu step (2 x 16 rows) divided by 4. this measures, on
one gpu, with the record's own model.py and optim.py, for micro-batches of 8, 16 and 32 rows:

  gpu_ms        the gpu's time per forward + backward launched back to back (cuda events); if the
                host launches slower than the gpu runs, this is the host's pace
  host_ms       the host's time to launch one forward + backward while the gpu is kept busy (a
                sleep kernel ahead of it), so nothing it launches can make it wait
  graph_ms      the same forward + backward captured once as a cuda graph and replayed: the gpu's
                own time with no launch cost

and the same three for the optimizer step (loss-scale check, newton-schulz on a second stream,
fused AdamW, the updates added). it then lists the operations of an eager step that make the host
wait for the gpu (torch.cuda.set_sync_debug_mode), and tries to capture a compiled DDP step
(one nccl rank, fp16 buckets) as a cuda graph, reporting whether that works and its replay time."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ddp_profile import load, record_optimizers  # a record's own model.py / optim.py; its optimizers

RECORD = "dense_muon_t4_ddp_v3"


def build(cfg_kwargs: dict, device: str, rows: int, seq_len: int):
    """the record's one-process model, optimizers, scaler and a batch of `rows` rows."""
    model_mod, optim_mod = load(RECORD, "model"), load(RECORD, "optim")
    torch.manual_seed(0)
    model = model_mod.GPT(model_mod.GPTConfig(**cfg_kwargs)).to(device)
    cuda = device.startswith("cuda")
    # capturable: the optimizer step can be replayed as a graph
    muon, adamw, _ = record_optimizers(optim_mod, model, model.trunk.blocks, model.trunk.lm_head, cuda, {}, capturable=cuda)
    scaler = optim_mod.LossScaler(device, enabled=cuda)
    g = torch.Generator().manual_seed(1)
    batch = torch.randint(0, cfg_kwargs["real_vocab_size"], (rows, seq_len + 1), generator=g).to(device)
    return model, muon, adamw, scaler, batch[:, :-1].contiguous(), batch[:, 1:].contiguous()


def amp(cuda: bool):
    return torch.autocast("cuda", dtype=torch.float16) if cuda else torch.autocast("cpu", enabled=False)


def timed(fn, cuda: bool, iters: int) -> dict:
    """gpu_ms (back to back, cuda events) and host_ms (launch cost with the gpu kept busy)."""
    if not cuda:
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        ms = (time.perf_counter() - t) * 1000 / iters
        return {"gpu_ms": ms, "host_ms": ms}
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(iters):
        fn()
    b.record()
    torch.cuda.synchronize()
    gpu_ms = a.elapsed_time(b) / iters
    torch.cuda._sleep(int(2e9))  # ~1 s of gpu time ahead of the launches: the host never waits
    t = time.perf_counter()
    for _ in range(2):
        fn()
    host_ms = (time.perf_counter() - t) * 1000 / 2
    torch.cuda.synchronize()
    return {"gpu_ms": gpu_ms, "host_ms": host_ms}


def graphed(fn, cuda: bool, iters: int) -> float | str | None:
    """ms per replay of fn captured once as a cuda graph (None on the cpu)."""
    if not cuda:
        return None
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(g):
            fn()
    except Exception as e:  # what cannot be captured is itself the finding
        torch.cuda.synchronize()
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return timed(g.replay, cuda, iters)["gpu_ms"]


def measure_rows(cfg_kwargs: dict, device: str, rows: int, seq_len: int, iters: int) -> dict:
    cuda = device.startswith("cuda")
    model, muon, adamw, scaler, x, y = build(cfg_kwargs, device, rows, seq_len)
    net = torch.compile(model) if cuda else model

    def fwd_bwd():
        with amp(cuda):
            loss = net(x, y)
        scaler.scale(loss).backward()

    side = torch.cuda.Stream() if cuda else None

    def opt_step():
        found_inf = scaler.unscale(model.parameters())
        if cuda:
            adamw.found_inf = muon.found_inf = found_inf
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                pending = muon.launch()
            adamw.step()
            torch.cuda.current_stream().wait_stream(side)
        else:
            pending = muon.launch()
            adamw.step()
        muon.apply(pending)
        scaler.update(found_inf)

    for _ in range(3):  # compile, and create the optimizer state
        fwd_bwd()
        opt_step()
    out = {"rows": rows, "fwd_bwd": timed(fwd_bwd, cuda, iters), "opt_step": timed(opt_step, cuda, iters)}
    out["fwd_bwd"]["graph_ms"] = graphed(fwd_bwd, cuda, iters)
    out["opt_step"]["graph_ms"] = graphed(opt_step, cuda, iters)
    return out


def sync_points(cfg_kwargs: dict, device: str, seq_len: int) -> list[str]:
    """the operations of an eager step (and the embedding's backward kernel) that make the host wait."""
    if not device.startswith("cuda"):
        return []
    model, muon, adamw, scaler, x, y = build(cfg_kwargs, device, 2, seq_len)
    found = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        with amp(True):
            loss = model(x, y)
        scaler.scale(loss).backward()
        torch.ops.aten.embedding_dense_backward(torch.randn(x.numel(), cfg_kwargs["n_embd"], device=device),
                                                x.reshape(-1), cfg_kwargs["vocab_size"], -1, False)
        found_inf = scaler.unscale(model.parameters())
        adamw.found_inf = muon.found_inf = found_inf
        muon.apply(muon.launch())
        adamw.step()
        scaler.update(found_inf)
        torch.cuda.set_sync_debug_mode("default")
    for w in caught:  # the line of python that called the synchronising operation
        if "prototype" in str(w.message):  # set_sync_debug_mode's notice about itself, not a sync
            continue
        found.append(f"{Path(w.filename).name}:{w.lineno}: {str(w.message).splitlines()[0][:120]}")
    return sorted(set(found))


def ddp_capture(cfg_kwargs: dict, device: str, rows: int, seq_len: int, iters: int) -> dict:
    """a compiled DDP trunk (one nccl rank, fp16 buckets) captured with its backward as a cuda graph."""
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.nn.parallel import DistributedDataParallel as DDP

    if not device.startswith("cuda"):
        return {"ok": None}
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "0")
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device(device))
    try:
        model, muon, adamw, scaler, x, y = build(cfg_kwargs, device, rows, seq_len)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            net = DDP(model.trunk, device_ids=[torch.device(device).index], gradient_as_bucket_view=True)
            net.register_comm_hook(None, default_hooks.fp16_compress_hook)
            fwd = torch.compile(net)

            def fwd_bwd():
                with torch.no_grad():
                    emb = model.embed(x)
                emb.requires_grad_(True)
                with amp(True):
                    loss = fwd(emb, y)
                scaler.scale(loss).backward()
                return emb

            for _ in range(11):  # DDP wants 11 eager iterations before a capture
                fwd_bwd()
        torch.cuda.current_stream().wait_stream(s)
        eager = timed(fwd_bwd, True, iters)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fwd_bwd()
        return {"ok": True, "eager": eager, "graph_ms": timed(g.replay, True, iters)["gpu_ms"]}
    except Exception as e:  # the point is to report what fails
        return {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    finally:
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="step-overhead.json")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the cpu: tests the script")
    args = ap.parse_args()
    if args.dry_run:
        device, seq_len, iters, rows_list = "cpu", 16, 2, (2, 4)
        cfg = dict(vocab_size=128, real_vocab_size=120, n_layer=1, n_head=2, n_embd=16, max_seq_len=16)
    else:
        device, seq_len, iters, rows_list = "cuda:0", 1024, 10, (8, 16, 32)
        cfg = dict(vocab_size=100352, real_vocab_size=100277, max_seq_len=1024)
    cfg.setdefault("n_embd", 768)
    report = {"device": torch.cuda.get_device_name() if device != "cpu" else "cpu", "torch": torch.__version__,
              "record": RECORD, "rows": []}
    for rows in rows_list:
        report["rows"].append(measure_rows(cfg, device, rows, seq_len, iters))
        print(json.dumps(report["rows"][-1]), flush=True)
    report["sync_points"] = sync_points(cfg, device, seq_len)
    print("sync points:", report["sync_points"], flush=True)
    report["ddp_capture"] = ddp_capture(cfg, device, rows_list[0], seq_len, iters)
    print("ddp capture:", report["ddp_capture"], flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
