"""which settings of records/dense_muon_t4_v5 reach the docs target in <= 1.0M tokens, and how fast: one gpu call.

    python benchmarks/t4_record_sweep.py --data data/docs --out sweep.json [--budget-s 480]
    python benchmarks/t4_record_sweep.py --dry-run [--data DIR] --out sweep.json   # tiny sizes on the cpu

every run trains the record's own code (benchmarks/t4_record_runs.py) on the docs train split in
the harness's order for a seed, under the T4 limits of `--as-t4` (fp16 autocast + GradScaler, TF32
off, no flash or cuDNN attention), and is scored by the harness's exact val loss (the 523,264
predicted tokens of the first 524,288 val tokens). three phases, each variant written to --out as
soon as it ends (a cut-short call keeps what finished):

1. loss per token, eager (no compile: a new graph per variant would cost 20-40 s each), seed 1:
   the record's full scale (`base`), the same at other batch sizes and step counts (<= 1.0M
   tokens), dense_muon_t4_v4's settings in the same code at the same tokens (`v4`), every technique
   of the record taken away on its own (`-x`), learning-rate and schedule alternatives, shapes.
2. seeds: a `combined` variant (base plus every single change of phase 1 that lowered the loss),
   a second seed for the best four, a third for the best two, and the best at fewer steps.
3. speed, compiled, under the 15 GiB cap, as far as the budget goes: the best; the best at another
   batch layout; the best with a rank-384 head (if that lost little in phase 1); the best without
   its value embeddings and without its soft-cap. each runs as train.py runs: untimed
   warm-up, then the clock from the first step to the end of the handover (every tensor the
   evaluation forward reads, copied to the host and written to a file in /dev/shm). reported:
   train time, steady-state ms per step, tokens/s, MFU (6·n + 12·L·d·T flops per token against
   the fp16 peak of an 8192³ matmul measured first), peak memory, handover bytes and ms, val loss.

--budget-s is a hard wall-clock budget: no variant starts unless its estimated time fits before
the deadline, less the time kept for phase 3. the table printed last is what to read."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

T_START = time.perf_counter()

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import t4_record_report as report_tables  # noqa: E402
import t4_record_runs as runs  # noqa: E402
from gpu_bench import measure_matmul_peak  # noqa: E402
from nanopoor.t4_estimate import estimate, flops_per_token  # noqa: E402

MAX_TOKENS = 1_000_000  # the record's aim: the docs target in no more than this many train tokens
TARGET = 5.86  # the docs track's target val loss (supervisor/tracks.toml, version 2)
TIME_AIM_S = 2.6  # ... and in no more than this many seconds of train clock (first batch to the end of the handover)
SEEDS = (1234, 1235, 1236)
COMPILED_EST_S = 45.0  # a compiled finalist before one has been measured: compile + warm-up + 2 runs
# a dry run's variants (every code path: layouts, the references, a technique off, a knob, the shapes)
DRY_SUBSET = "base,v4,base@32k,base@24k,-value_embeds,-softcap,muon_lr=0.08,head_rank=384,windows,8x640"


@dataclass
class Variant:
    name: str
    group: str  # base, batch, reference, ablation, knob, shape, combined, steps
    overrides: dict = field(default_factory=dict)  # Hyperparameters fields changed from the base
    rows: int = 0  # rows per micro-batch (the record's batch_size); 0: the base's
    accum: int = 0  # micro-batches per optimizer step (grad_accum); 0: the base's
    steps: int = 0  # optimizer steps; 0: the base's

    def layout(self) -> str:
        return f"{self.rows}x{self.accum}x{self.steps}"


# dense_muon_t4_v4's settings in this code: every new part off, its learning rates and schedule
V4_ARCH = {"rope": "full", "attn_scale": 0.0, "value_embeds": 0, "x0_mix": False, "unet": False, "attn_gate_dims": 0,
           "logit_bias": False, "logit_softcap": 0.0, "muon_split_qkv": False}
V4_OPT = {"muon_lr": 0.02, "muon_momentum_start": 0.95, "muon_momentum": 0.95, "embed_lr": 0.3, "value_embed_lr": 0.3,
          "head_lr": 0.008, "scalar_lr": 0.04, "warmup_steps": 5, "cooldown_frac": 0.4, "final_lr_frac": 0.0}


def phase1_plan(base: Variant) -> list[Variant]:
    """seed 1, in the order that matters most if the budget runs out."""
    tokens = base.rows * base.accum * base.steps  # windows per run at the base's layout
    plan = [base,
            Variant("v4", "reference", {**V4_ARCH, **V4_OPT}),
            Variant("base@32k", "batch", {}, 16, 2, tokens // 32),
            Variant("v4@32k", "reference", {**V4_ARCH, **V4_OPT}, 16, 2, tokens // 32),
            Variant("base@24k", "batch", {}, 12, 2, tokens // 24),
            Variant("v4_arch+new_opt", "reference", dict(V4_ARCH)),
            Variant("new_arch+v4_opt", "reference", dict(V4_OPT))]
    ablations = [("-value_embeds", {"value_embeds": 0}), ("value_embeds=1", {"value_embeds": 1}),
                 ("value_embeds=2", {"value_embeds": 2}), ("-unet", {"unet": False}), ("-x0", {"x0_mix": False}),
                 ("-attn_gate", {"attn_gate_dims": 0}), ("-softcap", {"logit_softcap": 0.0}),
                 ("-logit_bias", {"logit_bias": False}), ("-half_rope", {"rope": "full"}),
                 ("-attn_scale", {"attn_scale": 0.0}), ("-split_qkv", {"muon_split_qkv": False}),
                 ("-low_momentum", {"muon_momentum_start": 0.95})]
    plan += [Variant(n, "ablation", o) for n, o in ablations]
    knobs = [("muon_lr", [0.03, 0.08]), ("embed_lr", [0.3, 1.0]), ("head_lr", [0.004, 0.016]), ("bias_lr", [0.05, 0.5]),
             ("cooldown_frac", [0.3, 0.6]), ("final_lr_frac", [0.0]), ("warmup_steps", [3]), ("muon_momentum_start", [0.75])]
    for knob, values in knobs:
        for v in values:
            o = {knob: v}
            if knob == "embed_lr":  # the value embeddings move with the input embedding
                o["value_embed_lr"] = v
            plan.append(Variant(f"{knob}={v}", "knob", o))
    plan += [Variant("8x640", "shape", {"n_layer": 8, "n_embd": 640, "n_head": 5}),
             Variant("8x768", "shape", {"n_layer": 8}),
             Variant("head_rank=384", "shape", {"head_rank": 384}),
             Variant("windows", "shape", {"window_layers": "1,2,4", "window_start": 128, "window_end": 512}),
             # the public recipe's depth at its batch (12 x 768, 32k tokens a step): does this code land where it did?
             Variant("12x768@32k", "shape", {"n_layer": 12}, 16, 2, tokens // 32)]
    for v in plan:
        v.rows, v.accum, v.steps = v.rows or base.rows, v.accum or base.accum, v.steps or base.steps
    return plan


class Sweep:
    def __init__(self, a, data, device: str, base_hp: dict, base: Variant, seq_len: int, started: float = T_START):
        """started: when the budget began (perf_counter; by default the process's start, data loading included)."""
        self.a, self.data, self.device, self.base_hp, self.base, self.seq_len = a, data, device, base_hp, base, seq_len
        self.started = started
        self.deadline = started + a.budget_s
        self.runs: list[dict] = []
        self.timed: list[dict] = []
        self.meta: dict = {}
        self.rate: dict[int, float] = {}  # eager train seconds per window (1024 tokens), by rows per micro-batch
        self.eval_s = 0.0
        self.compiled_s = COMPILED_EST_S

    # -- bookkeeping -----------------------------------------------------------------------------
    def now(self) -> float:
        return time.perf_counter() - self.started

    def hp(self, v: Variant) -> dict:
        hp = {**self.base_hp, **v.overrides}
        if self.a.dry_run:  # tiny shapes: the variant's depth, capped, at width 32
            layers = min(hp["n_layer"], 4)
            windowed = ",".join(i for i in hp["window_layers"].split(",") if i.strip() and int(i) < layers)
            hp.update(n_layer=layers, n_embd=32, n_head=2, attn_gate_dims=min(hp["attn_gate_dims"], 4),
                      head_rank=16 if hp["head_rank"] else 0, window_layers=windowed, window_start=8, window_end=24)
        return hp

    def save(self) -> None:
        if not self.a.out:
            return
        report = {"meta": self.meta, "runs": self.runs, "timed": self.timed, "summary": summary(self)}
        tmp = self.a.out.with_name(self.a.out.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=1, default=str))
        os.replace(tmp, self.a.out)

    def estimate_s(self, v: Variant) -> float:
        rate = self.rate.get(v.rows) or (max(self.rate.values()) if self.rate else 0.0)
        return rate * v.rows * v.accum * v.steps + self.eval_s + 1.0

    def fits(self, seconds: float, reserve: float) -> bool:
        return time.perf_counter() + seconds < self.deadline - reserve

    def say(self, msg: str) -> None:
        print(f"[{self.now():5.0f}s] {msg}", flush=True)

    # -- phase 1 and 2: eager runs ---------------------------------------------------------------------
    def eager(self, v: Variant, seed: int, phase: int, reserve: float) -> dict | None:
        if any(r["name"] == v.name and r["seed"] == seed for r in self.runs):
            return None
        row = {"name": v.name, "group": v.group, "phase": phase, "seed": seed, "overrides": v.overrides, "rows": v.rows,
               "accum": v.accum, "steps": v.steps, "tokens": v.rows * v.accum * v.steps * self.seq_len}
        if self.runs and not self.fits(self.estimate_s(v), reserve):
            row.update(status="skipped", reason=f"budget: ~{self.estimate_s(v):.0f} s would pass the deadline")
            self.runs.append(row)
            self.say(f"p{phase} {v.name} s{seed}: skipped (budget)")
            self.save()
            return row
        try:
            out = runs.eager_run(self.hp(v), v.rows, v.accum, v.steps, seed, self.data, self.seq_len, self.device,
                                 also_fp32=v.name == "base" and seed == SEEDS[0])
            row.update(status="completed", **out)
            self.rate[v.rows] = out["eager_train_s"] / (v.steps * v.accum * v.rows)
            self.eval_s = out["wall_s"] - out["eager_train_s"]
        except Exception as e:  # an out-of-memory or a bad setting ends this variant, not the sweep
            row.update(status="oom" if isinstance(e, torch.OutOfMemoryError) else "error", reason=f"{type(e).__name__}: {e}"[:400])
            traceback.print_exc(limit=3)
        finally:
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
        self.runs.append(row)
        loss = f"val {row['val_loss']:.4f}" if "val_loss" in row else row["status"]
        self.say(f"p{phase} {v.name:<18} {v.layout():>8} s{seed}: {loss} ({row.get('wall_s', 0):.1f} s)")
        self.save()
        return row

    def mean_loss(self, name: str) -> tuple[float, int]:
        losses = [r["val_loss"] for r in self.runs if r["name"] == name and r.get("status") == "completed"]
        return (sum(losses) / len(losses), len(losses)) if losses else (float("inf"), 0)

    def combined(self, plan: list[Variant]) -> Variant | None:
        """base plus every single phase-1 change that lowered the loss (seed 1), the best per knob."""
        base_loss = self.loss_of("base", SEEDS[0])
        if base_loss is None:
            return None
        best: dict[str, tuple[float, dict]] = {}
        for v in plan:
            loss = self.loss_of(v.name, SEEDS[0])
            if v.group not in ("ablation", "knob") or loss is None or loss >= base_loss - self.a.min_gain:
                continue
            key = ",".join(sorted(k for k in v.overrides if k != "value_embed_lr"))
            if key not in best or loss < best[key][0]:
                best[key] = (loss, v.overrides)
        if not best:
            return None
        overrides: dict = {}
        for _, o in sorted(best.values(), key=lambda t: t[0]):
            if not set(o) & set(overrides):
                overrides.update(o)
        return Variant("combined", "combined", overrides, self.base.rows, self.base.accum, self.base.steps)

    def loss_of(self, name: str, seed: int) -> float | None:
        return next((r["val_loss"] for r in self.runs if r["name"] == name and r["seed"] == seed and "val_loss" in r), None)

    def ranked(self, variants: list[Variant], min_seeds: int = 1) -> list[Variant]:
        """candidates for the record (no more than MAX_TOKENS, not a reference) with at least min_seeds
        seeds run, by their mean loss; with min_seeds = 1, by seed 1's loss alone (every variant has
        seed 1, so the order is not bent by which variants were given a second, luckier or harder, seed)."""
        ok = [v for v in variants if v.group != "reference" and v.rows * v.accum * v.steps * self.seq_len <= MAX_TOKENS
              and self.mean_loss(v.name)[1] >= min_seeds]
        if min_seeds == 1:
            ok = [v for v in ok if self.loss_of(v.name, SEEDS[0]) is not None]
            return sorted(ok, key=lambda v: self.loss_of(v.name, SEEDS[0]))
        return sorted(ok, key=lambda v: self.mean_loss(v.name)[0])

    # -- phase 3: compiled, timed ---------------------------------------------------------------------
    def timed_variant(self, v: Variant, seeds: tuple[int, ...]) -> None:
        """compile v once, then one timed run per seed on that graph. out of memory under the cap
        (while compiling or in the first run): once more with the same tokens a step as micro-batches
        of half the rows."""
        if not self.fits(self.compiled_s, 0.0):
            self.timed.append({"name": v.name, "status": "skipped", "reason": "budget"})
            self.say(f"p3 {v.name}: skipped (budget)")
            return
        hp, t0 = self.hp(v), time.perf_counter()
        layouts = [(v.rows, v.accum)] + ([(v.rows // 2, v.accum * 2)] if v.rows % 2 == 0 else [])
        row = {"name": v.name, "overrides": v.overrides, "steps": v.steps, "tokens": v.rows * v.accum * v.steps * self.seq_len,
               "n_layer": hp["n_layer"], "n_embd": hp["n_embd"], "seeds": []}
        for rows, accum in layouts:
            row.update(rows=rows, accum=accum, seeds=[])
            status = self._timed_layout(row, hp, v, rows, accum, seeds)
            if status != "oom":
                break
            row.setdefault("oom_at", []).append(f"{rows}x{accum}")
            self.say(f"p3 {v.name}: out of memory at {rows}x{accum} under the cap")
        row["status"] = "completed" if any(r.get("status") == "completed" for r in row["seeds"]) else status
        row["wall_s"] = time.perf_counter() - t0
        self.compiled_s = max(self.compiled_s * 0.5, row["wall_s"])
        self.timed.append(row)
        self.save()

    def _timed_layout(self, row: dict, hp: dict, v: Variant, rows: int, accum: int, seeds: tuple[int, ...]) -> str:
        tr = None
        try:
            tr = runs.TimedTrainer(hp, self.data, self.seq_len, self.device, seeds[0], rows, compile_model=not self.a.dry_run)
            row["compile_warmup_s"] = tr.warmup_s
            counts = tr.model.param_counts()
            row.update(params=counts, flops_per_token=flops_per_token(counts["matmul"], hp["n_layer"], hp["n_embd"], self.seq_len))
            for i, seed in enumerate(seeds):
                if i and not self.fits(5.0 + self.eval_s, 0.0):
                    break
                if i:
                    tr.reseed(hp, self.data, self.seq_len, seed)
                out = runs.timed_run(tr, rows, accum, v.steps, seed, self.data, self.device)
                out.update(seed=seed, status="completed")
                tokens = rows * accum * v.steps * self.seq_len
                if "step_ms_median_after_3" in out:
                    tps = rows * accum * self.seq_len / (out["step_ms_median_after_3"] / 1e3)
                    out["tokens_per_s_steady"] = tps
                    out["mfu"] = row["flops_per_token"] * tps / self.meta["peak_flops"] if self.meta.get("peak_flops") else None
                out["tokens_per_s_run"] = tokens / out["train_s"]
                row["seeds"].append(out)
                self.say(f"p3 {v.name:<18} {rows}x{accum}x{v.steps} s{seed}: train {out['train_s']:.2f} s + handover "
                         f"{out['handover']['total_ms']:.0f} ms, val {out['val_loss']:.4f}")
            return "completed"
        except Exception as e:  # out of memory under the cap, or a compile that failed: the sweep goes on
            oom = isinstance(e, torch.OutOfMemoryError)
            row.setdefault("errors", []).append(f"{rows}x{accum}: {type(e).__name__}: {str(e)[:300]}")
            if not oom:
                traceback.print_exc(limit=3)
            return "oom" if oom and not row["seeds"] else ("completed" if row["seeds"] else "error")
        finally:
            del tr
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()


def finalists(sw: Sweep, plan: list[Variant]) -> list[Variant]:
    """in this order, as far as the budget goes: the best candidate; the best at another batch
    layout; the best with a rank-384 head when that cost seed 1 less than 0.02 (a cheaper step, if
    the best is too slow); the best without its value embeddings and without its soft-cap (what
    those two cost in time, beside what phase 1 says they buy in loss)."""
    ranked = sw.ranked(plan, 2) or sw.ranked(plan)
    if not ranked:
        return []
    best = ranked[0]
    picks = [best]
    other = next((v for v in sw.ranked(plan) if (v.rows * v.accum, v.steps) != (best.rows * best.accum, best.steps)), None)
    if other is not None:
        picks.append(other)
    hp = sw.hp(best)

    def like_best(suffix: str, change: dict) -> Variant:
        return Variant(f"{best.name}{suffix}", "timing", {**best.overrides, **change}, best.rows, best.accum, best.steps)

    low_rank, base = sw.loss_of("head_rank=384", SEEDS[0]), sw.loss_of("base", SEEDS[0])
    if not hp["head_rank"] and low_rank is not None and base is not None and low_rank < base + 0.02:
        picks.append(like_best("+head_rank=384", {"head_rank": 384}))
    if hp["value_embeds"]:
        picks.append(like_best("-value_embeds", {"value_embeds": 0}))
    if hp["logit_softcap"]:
        picks.append(like_best("-softcap", {"logit_softcap": 0.0}))
    return picks[: sw.a.finalists]


def summary(sw: Sweep) -> dict:
    """per variant: seeds' losses and their mean; the choice with its record.toml lines and estimates."""
    names: dict[str, dict] = {}
    for r in sw.runs:
        s = names.setdefault(r["name"], {"name": r["name"], "group": r["group"], "layout": f"{r['rows']}x{r['accum']}x{r['steps']}",
                                         "tokens": r["tokens"], "overrides": r["overrides"], "losses": {}})
        if "val_loss" in r:
            s["losses"][str(r["seed"])] = r["val_loss"]
            s.setdefault("eager_step_ms", r["eager_step_ms"])  # eager: a relative cost, not the record's step
        else:
            s.setdefault("status", r["status"])
    for s in names.values():
        v = list(s["losses"].values())
        s["mean"] = sum(v) / len(v) if v else None
    out = {"variants": list(names.values()), "target": TARGET, "max_tokens": MAX_TOKENS, "time_aim_s": TIME_AIM_S}
    done = [t for t in sw.timed if t.get("status") == "completed"]

    def loss(t: dict) -> float:
        """the variant's eager mean over its seeds where it has one (more seeds), else its compiled runs' mean."""
        eager = names.get(t["name"], {}).get("mean")
        if eager is not None:
            return eager
        vals = [x["val_loss"] for x in t["seeds"] if "val_loss" in x]
        return sum(vals) / len(vals)

    for t in done:
        t["loss_for_choice"] = loss(t)
        t["within_time_aim"] = max(x["train_clock_s"] for x in t["seeds"] if "train_clock_s" in x) <= TIME_AIM_S
    if done:
        # the lowest loss among the finalists whose every timed run fit the aim; if none did, the fastest
        fitting = [t for t in done if t["within_time_aim"]]
        best = min(fitting, key=lambda t: t["loss_for_choice"]) if fitting else \
            min(done, key=lambda t: min(x["train_clock_s"] for x in t["seeds"] if "train_clock_s" in x))
        s = best["seeds"][0]
        lines = record_lines(sw, best)
        est = {}
        if "params" in best:
            n, L, d = best["params"]["matmul"], best["n_layer"], best["n_embd"]
            for label, tokens in (("docs", best["tokens"]), ("fineweb-edu 100M", 100_000_000), ("fineweb-edu 500M", 500_000_000)):
                e = estimate(n, L, d, sw.seq_len, tokens)
                est[label] = {"tokens": tokens, "minutes": e.hours * 60, "minutes_range": [h * 60 for h in e.hours_range]}
        out["choice"] = {"name": best["name"], "record_toml": lines, "train_clock_s": [x["train_clock_s"] for x in best["seeds"]],
                         "val_loss": [x["val_loss"] for x in best["seeds"]], "loss_for_choice": best["loss_for_choice"],
                         "within_time_aim": best["within_time_aim"], "mfu": s.get("mfu"), "t4_estimate": est}
    return out


def record_lines(sw: Sweep, t: dict) -> str:
    """the [scales.full] lines that make the record train this variant."""
    args = {"compile": True}
    args.update({k: v for k, v in t["overrides"].items() if sw.base_hp.get(k) != v})
    text = ", ".join(f"{k} = {json.dumps(v)}" for k, v in args.items())  # json's literals are toml's
    return f"batch_size = {t['rows']}\ngrad_accum = {t['accum']}\nsteps = {t['steps']}\nargs = {{ {text} }}"


def print_report(sw: Sweep) -> None:
    print(report_tables.text({"meta": sw.meta, "runs": sw.runs, "timed": sw.timed, "summary": summary(sw)}))
    print(f"done in {sw.now():.0f} s of a {sw.a.budget_s:.0f} s budget; everything in {sw.a.out}", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, help="dataset folder (data/docs); a dry run without it uses synthetic tokens")
    ap.add_argument("--out", type=Path, help="json report, rewritten after every variant")
    ap.add_argument("--budget-s", type=float, default=480.0, help="hard wall-clock budget for the whole script")
    ap.add_argument("--phase3-reserve-s", type=float, default=150.0, help="time phases 1-2 leave for the compiled runs")
    ap.add_argument("--phase2-reserve-s", type=float, default=60.0, help="time phase 1 leaves for the seeds of phase 2")
    ap.add_argument("--finalists", type=int, default=5, help="compiled variants in phase 3, at most")
    ap.add_argument("--min-gain", type=float, default=0.01, help="a change joins `combined` when it lowers seed 1's loss by this much")
    ap.add_argument("--only", default="", help="comma-separated phase-1 variant names to run (default: all)")
    ap.add_argument("--phases", default="1,2,3")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the cpu: tests the script, not the record")
    a = ap.parse_args(argv)
    device = "cpu" if a.dry_run else "cuda"
    if a.dry_run:  # one thread: on a shared cpu, two threads waiting on each other took 20x longer
        torch.set_num_threads(1)
    if not a.dry_run and not torch.cuda.is_available():
        ap.error("needs a cuda gpu (or --dry-run)")
    flags = runs.set_t4_flags()
    # many graphs of one function are expected (the shared loss at each shape, one per finalist): no fallback to eager after 8
    torch._dynamo.config.recompile_limit = 64
    scale = runs.record_scale("full")
    base_hp = {**runs.record_defaults(), **scale.get("args", {})}
    seq_len, val_tokens = (64, 1024) if a.dry_run else (scale["seq_len"], 524288)
    base = Variant("base", "base", {}, scale["batch_size"], scale["grad_accum"], scale["steps"])
    if a.data:  # a dry run folds the ids into 512: seconds on a cpu, and its numbers mean nothing anyway
        data = runs.Data(a.data, seq_len, val_tokens, device, 4 if a.dry_run else 16, 512 if a.dry_run else None)
    else:
        data = runs.SyntheticData(seq_len, val_tokens, device)
    sw = Sweep(a, data, device, base_hp, base, seq_len)
    peak = None if a.dry_run else measure_matmul_peak("cuda", 8192)["flops"]
    sw.meta = {"gpu": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
               "t4_flags": flags, "peak_flops": peak, "record": str(runs.RECORD.relative_to(runs.REPO)), "base_hp": base_hp,
               "base_layout": base.layout(), "seq_len": seq_len, "val_tokens": val_tokens, "dataset": str(a.data),
               "fingerprint": data.fingerprint, "budget_s": a.budget_s, "seeds": SEEDS, "dry_run": a.dry_run}
    if device == "cuda":  # the shared compiled loss, tried once: if it cannot compile here, eager runs use the eager loss
        sw.meta["compiled_loss"] = runs.check_compiled_loss(device)
        sw.say(f"compiled loss for the eager runs: {sw.meta['compiled_loss']}")
    phases = {int(p) for p in a.phases.split(",") if p}
    plan = phase1_plan(base)
    if a.dry_run:  # the same layouts, shrunk: 4 rows (2 for the 12-row one), a twentieth of the steps
        for v in plan:
            v.rows, v.steps = (2 if v.rows == 12 else 4), max(2, round(v.steps / 20))
        base.steps = plan[0].steps
        sw.meta["base_layout"] = base.layout()
    only = a.only or (DRY_SUBSET if a.dry_run else "")
    if only:
        keep = set(only.split(","))
        plan = [v for v in plan if v.name in keep]
    reserve = a.phase3_reserve_s if 3 in phases else 0.0
    sw.say(f"{sw.meta['gpu']}, fp16 peak {peak / 1e12:.0f} TFLOP/s" if peak else "dry run on the cpu")
    try:
        run_phases(sw, a, plan, base, phases, reserve, device)
    finally:  # whatever happened, the report as far as it got
        sw.save()
        print_report(sw)


def run_phases(sw: Sweep, a, plan: list[Variant], base: Variant, phases: set[int], reserve: float, device: str) -> None:
    if 1 in phases:  # the tail of phase 1 (the shapes) gives way to phase 2's seeds
        for v in plan:
            sw.eager(v, SEEDS[0], 1, reserve + (a.phase2_reserve_s if 2 in phases else 0.0))
    if 2 in phases:
        combo = sw.combined(plan)
        # a combination of one change is that change's own variant: nothing new to run
        extra = [combo] if combo and not any(v.overrides == combo.overrides for v in plan) else []
        for v in extra:
            for seed in SEEDS[:2]:
                sw.eager(v, seed, 2, reserve)
        pool = plan + extra
        for v in sw.ranked(pool)[:4]:
            sw.eager(v, SEEDS[1], 2, reserve)
        for v in sw.ranked(pool, 2)[:2]:
            sw.eager(v, SEEDS[2], 2, reserve)
        for v in (sw.ranked(pool, 2) or sw.ranked(pool))[:1]:  # fewer tokens: how much room the best has under the target
            for frac in (0.8, 0.9):
                if max(2, round(v.steps * frac)) == v.steps:
                    continue
                sw.eager(Variant(f"{v.name}@{frac:.0%}", "steps", v.overrides, v.rows, v.accum, max(2, round(v.steps * frac))),
                         SEEDS[0], 2, reserve)
        plan = pool
    if 3 in phases:
        if device == "cuda":
            sw.meta["memory_fraction"] = runs.cap_memory(device)
        for v in finalists(sw, plan):
            sw.timed_variant(v, SEEDS[:2])


if __name__ == "__main__":
    main()
