"""what a dense_muon_t4 training step costs, and what each change of dense_muon_t4_v2 buys.

    python benchmarks/t4_step_variants.py [--rounds 40] [--out variants.json]

the model and optimizers come from records/dense_muon_t4_v2 (same model as dense_muon_t4; its
muon can skip an overflowed step on the device). every variant trains the same 32,768 tokens a
step (the records' 1024 × 8 × 4), fp16 autocast, GradScaler, compiled forward + backward:

  v1            dense_muon_t4's loop: 4 micro-steps of 8 rows; the overflow check is a python `if`
                on the gradient norm and GradScaler.step() reads muon's inf flag: two host syncs
  v1_twin       v1 again, its own model: how far two identical runs drift apart on this gpu
                (its kernels are not bitwise deterministic), the yardstick for the next line
  syncfree      the same micro-steps, the skip decided on the device (found_inf), one sync a step
                (the loss for h.log_step)
  syncfree_b16  the same, 2 micro-steps of 16 rows
  syncfree_b16_nsc  the same, newton-schulz compiled (torch.compile of the iteration)

each variant has its own model, compiled and stepped 3 times first (untimed). then the variants
take turns step by step (the gpu's clocks drift over a minute; blocks in a fixed order would
bias whoever runs first), each step timed from an idle device to its loss readback. per variant:
median step ms, mfu = 6 · n · 32,768 / step / measured fp16 peak, and its own peak memory (its
weights + states + grads, plus the transient high-water mark of a step). batches are random
tokens, made once: timing does not depend on the text. needs cuda; --dry-run runs tiny sizes on
the cpu to test the script itself (its numbers mean nothing).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "records" / "dense_muon_t4_v2"
sys.path.insert(0, str(RECORD))
import optim  # noqa: E402  (the record's own modules)
from model import GPT, GPTConfig  # noqa: E402
from gpu_bench import measure_matmul_peak  # noqa: E402  (benchmarks/, this script's folder)

VARIANTS = ("v1", "v1_twin", "syncfree", "syncfree_b16", "syncfree_b16_nsc")
EAGER_NS = optim.newton_schulz


class Variant:
    """one model + its optimizers + scaler, trained by one of the step functions below."""

    def __init__(self, name: str, cfg: GPTConfig, tokens: torch.Tensor, device: str, compile_model: bool):
        self.name, self.device = name, device
        torch.manual_seed(0)
        base = torch.cuda.memory_allocated() if device == "cuda" else 0
        self.model = GPT(cfg).to(device)
        rows = 16 if "b16" in name else 8
        b = tokens.size(0)  # tokens: (32, T + 1) for one optimizer step
        self.micro = [(tokens[i:i + rows, :-1].contiguous(), tokens[i:i + rows, 1:].contiguous()) for i in range(0, b, rows)]
        self.ns = torch.compile(EAGER_NS) if name.endswith("_nsc") and compile_model else EAGER_NS
        hidden = [p for p in self.model.blocks.parameters() if p.dim() == 2]
        gains = [p for p in self.model.parameters() if p.dim() < 2]
        on_cuda = device == "cuda"
        self.muon = optim.Muon(hidden, lr=0.02, momentum=0.95, ns_dtype=torch.float16 if on_cuda else torch.float32)
        self.adamw = torch.optim.AdamW([{"params": [self.model.embed.weight], "lr": 0.3},
                                        {"params": [self.model.lm_head.weight], "lr": 0.008},
                                        {"params": gains, "lr": 0.04}],
                                       betas=(0.8, 0.95), eps=1e-10, weight_decay=0.0, fused=on_cuda)
        self.opts = [self.adamw, self.muon]
        self.scaler = torch.amp.GradScaler(device, enabled=on_cuda)
        self.fwd = torch.compile(self.model) if compile_model else self.model
        self.amp = (lambda: torch.autocast("cuda", dtype=torch.float16)) if on_cuda else (lambda: torch.autocast("cpu", enabled=False))
        self.step_fn = step_v1 if name.startswith("v1") else step_syncfree
        self.skipped = torch.zeros((), device=device)
        self.base_bytes = base

    def step(self) -> float:
        optim.newton_schulz = self.ns  # the muon step looks the iteration up in its module
        try:
            return self.step_fn(self)
        finally:
            optim.newton_schulz = EAGER_NS


def _accumulate(v: Variant) -> torch.Tensor:
    loss_sum = torch.zeros((), device=v.device)
    for x, y in v.micro:
        with v.amp():
            loss = v.fwd(x, y)
        v.scaler.scale(loss / len(v.micro)).backward()
        loss_sum += loss.detach()
    return loss_sum


def step_v1(v: Variant) -> float:
    """dense_muon_t4's loop, verbatim in what it syncs."""
    loss_sum = _accumulate(v)
    for opt in v.opts:
        v.scaler.unscale_(opt)
    grad_norm = torch.nn.utils.clip_grad_norm_(v.model.parameters(), float("inf"))
    if torch.isfinite(grad_norm):  # host sync
        for opt in v.opts:
            v.scaler.step(opt)  # muon: another sync (GradScaler reads its inf flag)
    v.scaler.update()
    v.model.zero_grad(set_to_none=True)
    return loss_sum.item() / len(v.micro)


def step_syncfree(v: Variant) -> float:
    """dense_muon_t4_v2's loop: both optimizers read one device flag; the loss is the only sync."""
    loss_sum = _accumulate(v)
    for opt in v.opts:
        v.scaler.unscale_(opt)
    grad_norm = torch.nn.utils.clip_grad_norm_(v.model.parameters(), float("inf"))
    found_inf = (~torch.isfinite(grad_norm)).float()  # 0-d, on the device
    if v.device == "cuda":
        for opt in v.opts:
            opt.found_inf = found_inf  # fused AdamW and our muon skip on the device
            opt.step()
            del opt.found_inf
    elif not found_inf:  # the cpu's AdamW is not fused and takes no flag; a sync costs nothing there
        for opt in v.opts:
            opt.step()
    v.skipped += found_inf
    v.scaler.update()
    v.model.zero_grad(set_to_none=True)
    return loss_sum.item() / len(v.micro)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the cpu: tests the script, not the gpu")
    a = ap.parse_args()
    device = "cpu" if a.dry_run else "cuda"
    if a.dry_run:
        cfg, T, rounds = GPTConfig(vocab_size=128, real_vocab_size=120, n_layer=2, n_head=2, n_embd=32, max_seq_len=16), 16, 2
    else:
        cfg, T, rounds = GPTConfig(), 1024, a.rounds
    peak = None if a.dry_run else measure_matmul_peak("cuda", 8192)["flops"] / 1e12  # TFLOP/s
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, cfg.real_vocab_size, (32, T + 1), generator=gen).to(device)
    variants = []
    for name in VARIANTS:
        t0 = time.perf_counter()
        v = Variant(name, cfg, tokens, device, compile_model=not a.dry_run)
        for _ in range(3):
            v.step()
        if device == "cuda":
            torch.cuda.synchronize()
            v.own_bytes = torch.cuda.memory_allocated() - v.base_bytes  # weights + optimizer states (grads freed)
        n = v.model.param_counts()["matmul"]
        print(f"{name}: ready in {time.perf_counter() - t0:.1f} s", flush=True)
        variants.append(v)
    times = {v.name: [] for v in variants}
    transient = {v.name: 0 for v in variants}
    for _ in range(rounds):
        for v in variants:
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
            t0 = time.perf_counter()
            v.step()  # ends in the loss readback
            times[v.name].append((time.perf_counter() - t0) * 1e3)
            if device == "cuda":
                transient[v.name] = max(transient[v.name], torch.cuda.max_memory_allocated() - before)
    rows = []
    for v in variants:
        ms = statistics.median(times[v.name])
        tokens_per_step = 32 * T
        row = {"variant": v.name, "step_ms": ms, "p10_ms": statistics.quantiles(times[v.name], n=10)[0] if rounds > 1 else ms,
               "tokens_per_s": tokens_per_step / ms * 1e3,
               "mfu": 6 * n * tokens_per_step / (ms / 1e3) / (peak * 1e12) if peak else None,
               "peak_gib": (v.own_bytes + transient[v.name]) / 2**30 if device == "cuda" else None,
               "skipped_steps": int(v.skipped.item())}
        rows.append(row)
    base = rows[0]["step_ms"]
    # the same init, data and number of steps: v1 and syncfree train the same weights, up to the
    # drift between two runs of v1 itself (non-deterministic kernels, amplified by adam's sign-like steps)
    def drift(a: Variant, b: Variant) -> float:
        return max((p - q).abs().max().item() for p, q in zip(a.model.parameters(), b.model.parameters()))

    by = {v.name: v for v in variants}
    twin, same = drift(by["v1"], by["v1_twin"]), drift(by["v1"], by["syncfree"])
    print(f"\nfp16 peak {peak:.1f} TFLOP/s, n = {n:,} matmul parameters, {rounds} steps each, alternating" if peak else "\n(dry run)")
    print(f"{'variant':<18}{'step ms':>9}{'p10 ms':>9}{'tok/s':>10}{'MFU':>7}{'vs v1':>8}{'peak GiB':>10}")
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] else "-"
        gib = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        print(f"{r['variant']:<18}{r['step_ms']:>9.2f}{r['p10_ms']:>9.2f}{r['tokens_per_s']:>10,.0f}{mfu:>7}"
              f"{base / r['step_ms']:>7.3f}×{gib:>10}")
    print(f"max |Δweight| after {rounds + 3} steps: v1 vs v1_twin {twin:.3g}, v1 vs syncfree {same:.3g}")
    if a.out:
        info = {"v1_vs_v1_twin_max_abs_diff": twin, "v1_vs_syncfree_max_abs_diff": same,
                "gpu": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
                "peak_tflops": peak, "matmul_params": n, "rounds": rounds, "rows": rows}
        a.out.write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
