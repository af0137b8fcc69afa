"""the red team's newest attacks, run against other checkouts of the harness, side by side.

    .venv/bin/python scripts/redteam_against.py OLD_CHECKOUT [.] [--out redteam-against.json]

    # e.g. harness 0.3.2 against this one:
    git worktree add /tmp/h032 149dfc1
    .venv/bin/python scripts/redteam_against.py /tmp/h032 .

the attack records are this checkout's (tests/redteam/rt_*); each checkout runs them with its own
harness, runner and verify, on its own copy of the red team's small dataset (built by that
checkout's tests/redteam/test_redteam.py), at smoke scale and seed 11. a checkout runs in an
interpreter of its own (two harnesses cannot share one). for each attack and checkout the table
shows the status, the val loss, the train time (and what of it the claim was charged) and whether
`verify` finds the folder clean: an attack got through where it completed, verified, and beat the
honest record (clean_no_warmup) under the same checkout on loss or on time without paying on the
other (see got_through).

it is not part of the test suite: its answer for an older checkout does not change, and each
checkout's runs take a few minutes on two cores."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
ATTACKS = ROOT / "tests" / "redteam"
SEED = 11
PAID = 2.0   # a lower loss at more than this many times the honest record's train time was paid for

# name -> (attack record under tests/redteam, or a record of records/, its smoke args, what it tries)
CASES = {
    "clean_no_warmup": ("rt_clean", {}, "the honest record"),
    "baseline_adamw": ("records/baseline_adamw", {}, "an honest record of the board, as it is frozen"),
    "muon_3xlr": ("records/muon_3xlr", {}, "an honest record of the board, as it is frozen"),
    "outside_generate": ("rt_outside", {"mode": "generate"}, "pretrain on the tool's generator before the clock"),
    "outside_regenerate": ("rt_outside", {"mode": "regenerate"}, "rebuild the run's dataset for a lookup"),
    "claim_copy": ("rt_claim_work", {"mode": "claim_copy", "epochs": 3}, "train a copy inside the claim's first call"),
    "pause_work": ("rt_pause_work", {"hidden_steps": 60}, "train inside progress evaluations"),
    "tamper_lower": ("rt_client_tamper", {"mode": "lower_everything"}, "lower the clock, log and claim from inside"),
    "tamper_blind": ("rt_client_tamper", {"mode": "blind_probe"}, "find the causality probe and blind it"),
}

console = Console(width=None if sys.stdout.isatty() else 160)


def run_one(checkout: Path, work: Path, names: list[str]) -> list[dict]:
    """every attack under one checkout; runs in that checkout's interpreter state (see --one)."""
    sys.path[:0] = [str(checkout), str(checkout / "tests"), str(checkout / "tests" / "redteam")]
    import harness

    if Path(harness.__file__).resolve().parent != (checkout / "harness").resolve():
        raise SystemExit(f"error: imported harness from {harness.__file__}, not {checkout}")
    from conftest import copy_record
    from nanopoor.runner import run_record
    from nanopoor.verify import verify_target
    from test_redteam import make_redteam_dataset

    rows = []
    for name in names:
        folder, args, _ = CASES[name]
        data = make_redteam_dataset(work / "data" / name / "demo")
        src = ROOT / folder if folder.startswith("records/") else ATTACKS / folder
        rec = copy_record(src, work / "records", name=f"{src.name}_{name}", args=args)
        t0 = time.monotonic()
        d = run_record(rec, scale="smoke", seed=SEED, data_dir=data, out_root=work / "runs", quiet=True)
        r = json.loads((d / "result.json").read_text())
        problems = [p for c in verify_target(str(d), records_dir=work / "records") for p in c.problems]
        rows.append({"case": name, "status": r.get("status"), "val_loss": r.get("val_loss"),
                     "train_time_ms": r.get("train_time_ms"), "eval_charged_ms": r.get("eval_charged_ms") or 0.0,
                     "reason": r.get("reason") or "",
                     "isolated": r.get("isolated", False), "harness_version": r.get("harness_version"),
                     "verify_problems": problems[:3], "wall_s": round(time.monotonic() - t0, 1), "run_dir": str(d)})
        print(f"{checkout.name}: {name} {r.get('status')} ({rows[-1]['wall_s']} s)", file=sys.stderr, flush=True)
    return rows


def got_through(row: dict, honest: dict | None) -> bool:
    """completed, verified, and better than the honest record under the same harness on one count
    without paying on the other: a lower loss in no more than PAID times its train time, or under
    half its train time at no higher loss. (a lower loss bought with train time the harness
    charged is what training longer buys an honest record: not a way through.)"""
    if honest is None or not CASES[row["case"]][0].startswith("rt_") or row["case"] == "clean_no_warmup" \
            or row["status"] != "completed" or row["verify_problems"]:
        return False
    loss, ms, h_loss, h_ms = row["val_loss"], row["train_time_ms"], honest["val_loss"], honest["train_time_ms"]
    if None in (loss, ms, h_loss) or not h_ms:
        return False
    lower = loss < h_loss - 1e-4 and ms <= PAID * h_ms
    faster = ms < 0.5 * h_ms and loss <= h_loss + 1e-4
    return bool(lower or faster)


def main(
    checkouts: list[Path] = typer.Argument(..., help="checkouts of nanopoor to run the attacks under (e.g. an old commit's worktree, and .)"),
    out: Path = typer.Option(None, help="also write every row as json here"),
    cases: str = typer.Option(",".join(CASES), help="comma-separated attacks to run"),
    one: bool = typer.Option(False, hidden=True, help="internal: run under the single checkout given, print json"),
) -> None:
    """Run the red team's newest attacks under each checkout's harness and show what each let through."""
    names = [c for c in cases.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        raise typer.BadParameter(f"unknown attack(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    if one:
        with tempfile.TemporaryDirectory(prefix="rta") as tmp:
            print(json.dumps(run_one(checkouts[0].resolve(), Path(tmp), names)))
        return
    results = {}
    for checkout in checkouts:
        checkout = checkout.resolve()
        if not (checkout / "harness").is_dir() or not (checkout / "nanopoor").is_dir():
            console.print(f"error: {checkout} is not a nanopoor checkout (no harness/ and nanopoor/): give a worktree of the project")
            raise typer.Exit(1)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        res = subprocess.run([sys.executable, __file__, str(checkout), "--one", "--cases", ",".join(names)],
                             cwd=checkout, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            console.print(f"error: the attacks under {checkout} stopped: {(res.stderr.strip().splitlines() or ['?'])[-1]}")
            raise typer.Exit(1)
        results[str(checkout)] = json.loads(res.stdout.strip().splitlines()[-1])
    table = Table(title=f"the red team's attacks under each checkout (smoke scale, seed {SEED})")
    table.add_column("attack")
    table.add_column("tries")
    for checkout, rows in results.items():
        version = next((r["harness_version"] for r in rows if r.get("harness_version")), "?")
        table.add_column(f"{Path(checkout).name} (harness {version})")
    for name in names:
        cells = []
        for rows in results.values():
            by = {r["case"]: r for r in rows}
            r, honest = by[name], by.get("clean_no_warmup")
            verdict = "[red]GOT THROUGH[/]" if got_through(r, honest) else r["status"]
            val = f"{r['val_loss']:.4f}" if isinstance(r["val_loss"], float) else "—"
            ms = f"{r['train_time_ms']:,.0f} ms" if isinstance(r["train_time_ms"], (int, float)) else "—"
            check = "verifies" if not r["verify_problems"] else "verify: " + r["verify_problems"][0][:60]
            if r.get("eval_charged_ms"):
                ms += f" ({r['eval_charged_ms']:,.0f} charged)"
            cells.append(f"{verdict}: val {val}, {ms}; {check}" + (f"\n{r['reason'][:90]}" if r["reason"] else ""))
        table.add_row(name, CASES[name][2], *cells)
    console.print(table)
    if out:
        out.write_text(json.dumps({"seed": SEED, "scale": "smoke", "results": results}, indent=2) + "\n")
        console.print(f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)
