"""the tables of a t4_record_sweep.py report, as text (what the sweep prints last) or as markdown for docs/benchmarks.md.

    python benchmarks/t4_record_report.py sweep.json            # markdown
    python benchmarks/t4_record_report.py sweep.json --text     # the sweep's own closing table

everything comes from the report's json: nothing is measured here."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _seeds(report: dict) -> list[str]:
    return [str(s) for s in report["meta"]["seeds"]]


def loss_rows(report: dict) -> list[dict]:
    """one row per variant, best mean first; delta against base's mean (None where either is missing)."""
    variants = report["summary"]["variants"]
    base = next((v["mean"] for v in variants if v["name"] == "base"), None)
    rows = []
    for v in sorted(variants, key=lambda v: (v["mean"] is None, v["mean"] or 0.0)):
        delta = v["mean"] - base if v["mean"] is not None and base is not None else None
        rows.append({**v, "delta": delta})
    return rows


def timed_rows(report: dict) -> list[dict]:
    rows = []
    for t in report["timed"]:
        for r in t.get("seeds") or [{}]:
            rows.append({"name": t["name"], "layout": f"{t.get('rows', '?')}x{t.get('accum', '?')}x{t.get('steps', '?')}",
                         "status": r.get("status") or t.get("status"), "reason": t.get("reason", ""), **r})
    return rows


def text(report: dict) -> str:
    seeds = _seeds(report)
    val_tokens = next((r.get("val_tokens") for r in report["runs"] if r.get("val_tokens")), 0)
    out = [f"\n== loss per token (eager; T4 flags; val = the harness's loss over {val_tokens:,} tokens) ==",
           f"{'variant':<22}{'group':<10}{'rows x acc x steps':>18}{'tokens':>10}" + "".join(f"{'s' + x[-2:]:>8}" for x in seeds)
           + f"{'mean':>8}{'vs base':>9}{'eager ms':>9}"]
    for v in loss_rows(report):
        cells = "".join(f"{v['losses'][x]:8.3f}" if x in v["losses"] else f"{'-':>8}" for x in seeds)
        mean = f"{v['mean']:8.3f}" if v["mean"] is not None else f"{v.get('status', '-'):>8}"
        delta = f"{v['delta']:+9.3f}" if v["delta"] is not None else f"{'':>9}"
        step = f"{v['eager_step_ms']:9.1f}" if v.get("eager_step_ms") else f"{'':>9}"
        out.append(f"{v['name'][:21]:<22}{v['group']:<10}{v['layout']:>18}{v['tokens']:>10,}{cells}{mean}{delta}{step}")
    skipped = [f"{r['name']} s{r['seed']}: {r['skipped_steps']}" for r in report["runs"] if r.get("skipped_steps")]
    if skipped:
        out.append("fp16 overflow, optimizer steps skipped: " + "; ".join(skipped))
    fp32 = next((r for r in report["runs"] if "val_loss_fp32_weights" in r), None)
    if fp32:
        out.append(f"base, seed {fp32['seed']}: fp16 weights handed over {fp32['val_loss']:.4f}, fp32 {fp32['val_loss_fp32_weights']:.4f}")
    if report["timed"]:
        peak = report["meta"].get("peak_flops")
        out.append(f"\n== compiled, 15 GiB cap, clock from first step to handover end (fp16 peak {peak / 1e12:.0f} TFLOP/s) ==" if peak
                   else "\n== timed runs (dry run: no compile, no gpu) ==")
        out.append(f"{'variant':<24}{'layout':>10}{'seed':>6}{'train s':>9}{'hand ms':>9}{'clock s':>9}{'ms/step':>9}{'tok/s':>10}"
                   f"{'MFU':>7}{'peak GiB':>9}{'val':>8}")
        for r in timed_rows(report):
            if r["status"] != "completed":
                out.append(f"{r['name'][:23]:<24}{r['layout']:>10}  {r['status']} {r['reason']}")
                continue
            mfu = f"{100 * r['mfu']:6.1f}%" if r.get("mfu") else f"{'-':>7}"
            peak_gib = f"{r['peak_allocated_gib']:9.2f}" if "peak_allocated_gib" in r else f"{'-':>9}"
            step = f"{r['step_ms_median_after_3']:9.2f}" if "step_ms_median_after_3" in r else f"{'-':>9}"
            tps = r.get("tokens_per_s_steady", r["tokens_per_s_run"])
            out.append(f"{r['name'][:23]:<24}{r['layout']:>10}{r['seed']:>6}{r['train_s']:9.2f}{r['handover']['total_ms']:9.0f}"
                       f"{r['train_clock_s']:9.2f}{step}{tps:10,.0f}{mfu}{peak_gib}{r['val_loss']:8.4f}")
        h = next((r["handover"] for r in timed_rows(report) if r["status"] == "completed"), None)
        if h:
            out.append(f"handover: {h['bytes'] / 1e9:.2f} GB in {h['total_ms']:.0f} ms ({h['ms_per_gb']:.0f} ms/GB: to host "
                       f"{h['to_host_ms']:.0f}, write {h['write_ms']:.0f}) to {h['file_dir']}")
    c = report["summary"].get("choice")
    if c:
        aim = report["summary"]["time_aim_s"]
        fit = f"every timed run within {aim} s" if c["within_time_aim"] else f"NO finalist ran within {aim} s: the fastest"
        out.append(f"\nchoice: {c['name']} ({fit})  clock {', '.join(f'{x:.2f}' for x in c['train_clock_s'])} s  val "
                   f"{', '.join(f'{x:.4f}' for x in c['val_loss'])} (chosen on {c['loss_for_choice']:.4f}, its eager mean or else its timed runs'; "
                   f"target {report['summary']['target']}, <= {report['summary']['max_tokens']:,} tokens)")
        out.append("record.toml [scales.full]:\n" + c["record_toml"])
        for label, e in c["t4_estimate"].items():
            out.append(f"T4 estimate, {label}: {e['minutes']:.1f} min ({e['minutes_range'][0]:.1f}-{e['minutes_range'][1]:.1f})")
    return "\n".join(out)


def markdown(report: dict) -> str:
    seeds = _seeds(report)
    m = report["meta"]
    out = [f"Sweep: `{m['gpu']}`, torch {m['torch']}, dataset fingerprint `{m['fingerprint']}`, val {m['val_tokens']:,} tokens, "
           f"base `{m['base_layout']}` (rows × micro-batches × steps). Eager runs; T4 flags {m['t4_flags']}.", "",
           "| variant | group | rows × acc × steps | tokens | " + " | ".join(f"seed {x}" for x in seeds)
           + " | mean | vs base | eager ms/step |",
           "|---|---|---|---|" + "---|" * len(seeds) + "---|---|---|"]
    for v in loss_rows(report):
        cells = " | ".join(f"{v['losses'][x]:.4f}" if x in v["losses"] else "—" for x in seeds)
        mean = f"{v['mean']:.4f}" if v["mean"] is not None else v.get("status", "—")
        delta = f"{v['delta']:+.4f}" if v["delta"] is not None else ""
        step = f"{v['eager_step_ms']:.1f}" if v.get("eager_step_ms") else ""
        out.append(f"| {v['name']} | {v['group']} | {v['layout']} | {v['tokens']:,} | {cells} | {mean} | {delta} | {step} |")
    rows = timed_rows(report)
    if rows:
        out += ["", "| variant | rows × acc × steps | seed | train s | handover ms | clock s | ms/step | tokens/s | MFU | peak GiB | val |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if r["status"] != "completed":
                out.append(f"| {r['name']} | {r['layout']} | — | {r['status']} {r['reason']} | | | | | | | |")
                continue
            mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "—"
            peak = f"{r['peak_allocated_gib']:.2f}" if "peak_allocated_gib" in r else "—"
            step = f"{r['step_ms_median_after_3']:.2f}" if "step_ms_median_after_3" in r else "—"
            tps = r.get("tokens_per_s_steady", r["tokens_per_s_run"])
            out.append(f"| {r['name']} | {r['layout']} | {r['seed']} | {r['train_s']:.2f} | {r['handover']['total_ms']:.0f} | "
                       f"{r['train_clock_s']:.2f} | {step} | {tps:,.0f} | {mfu} | {peak} | {r['val_loss']:.4f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--text", action="store_true", help="the sweep's closing table instead of markdown")
    a = ap.parse_args()
    report = json.loads(a.report.read_text())
    print(text(report) if a.text else markdown(report))


if __name__ == "__main__":
    main()
