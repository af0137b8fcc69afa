#!/usr/bin/env bash
# show the T4 limits refusing on a GPU that is not a T4 (one device call, about a minute).
# a tiny record (tests/fixtures/records/t4_breaker) runs four times on a synthetic 'demo' dataset:
#   1. holds 16 GiB under --as-t4        -> failed, "t4_limits: memory: out of memory under the 15 GiB ..."
#   2. holds 16 GiB without the flag     -> completed (the cap, not the gpu, refused run 1)
#   3. holds 14 GiB under --as-t4        -> completed (the cap leaves a T4's 15 GiB usable)
#   4. bf16 autocast under --as-t4       -> invalid, "t4_limits: bf16/fp8: the record entered torch.autocast ..."
# it exits 1 when any run ends otherwise. run from the repo root:
#   bash scripts/gpu_t4_refusal.sh            # on the gpu machine; $OUT gets t4_refusal.json
#   PY=.venv/bin/python bash scripts/gpu_t4_refusal.sh --dry-run  # on a cpu: run 4 only (no device memory to cap)
set -uo pipefail
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
export PYTHONPATH=$PWD:$PWD/tests PYTHONUNBUFFERED=1
"${PY:-python3}" - "$out" "${1:-}" <<'PY'
import json, sys, tempfile, types
from pathlib import Path

try:
    import pytest  # noqa: F401  tests/conftest.py decorates its fixtures with it
except ImportError:  # a machine without pytest: the decorators only need to hand the function back
    sys.modules["pytest"] = types.SimpleNamespace(fixture=lambda *a, **k: a[0] if a and callable(a[0]) else (lambda f: f))
from conftest import FIXTURES, copy_record, make_dataset
from nanopoor.runner import run_record

out, dry = Path(sys.argv[1]), sys.argv[2] == "--dry-run"
root = Path(tempfile.mkdtemp(prefix="t4-refusal-"))
data = make_dataset(root / "demo")
cases = [  # name, args, --as-t4, expected status, words the reason must start with
    ("alloc16_as_t4", {"mode": "alloc_gib", "gib": 16}, True, "failed", "t4_limits: memory: out of memory under the 15 GiB"),
    ("alloc16_plain", {"mode": "alloc_gib", "gib": 16}, False, "completed", ""),
    ("alloc14_as_t4", {"mode": "alloc_gib", "gib": 14}, True, "completed", ""),
    ("bf16_as_t4", {"mode": "bf16_autocast"}, True, "invalid", "t4_limits: bf16/fp8: the record entered torch.autocast"),
]
if dry:
    cases = cases[-1:]
rows, ok = [], True
for name, args, as_t4, want, words in cases:
    rec = copy_record(FIXTURES / "records" / "t4_breaker", root / "records", name=f"t4_{name}", args=args)
    run_dir = run_record(rec, scale="smoke", seed=1, data_dir=data, out_root=root / "runs", quiet=True, as_t4=as_t4)
    r = json.loads((run_dir / "result.json").read_text())
    good = r["status"] == want and r["reason"].startswith(words)
    ok &= good
    rows.append({"case": name, "as_t4": as_t4, "status": r["status"], "reason": r["reason"], "t4_limits": r["t4_limits"],
                 "hardware": r["hardware_label"], "peak_memory_bytes": r["peak_memory_bytes"], "as_expected": good})
    print(f"{name:15s} {'ok ' if good else 'BAD'} {r['status']:9s} {r['reason'][:160]}", flush=True)
(out / "t4_refusal.json").write_text(json.dumps(rows, indent=2) + "\n")
sys.exit(0 if ok else 1)
PY
