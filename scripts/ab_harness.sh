#!/usr/bin/env bash
# one device call: the same record, same seed, same machine, under an older harness and the
# current one, to tell a harness regression from a slower machine. the older harness travels
# as a plain copy of its two packages, made here before the call:
#   mkdir -p .carry/h01 && git archive 8a15790^ harness nanopoor | tar x -C .carry/h01
#   bash scripts/ab_harness.sh records/muon 7 .carry/h01        (carry .carry/h01 and the wheel)
# the old runner starts its record with its own harness on the path (it runs from inside the
# copy, so `python -m nanopoor` finds the old package first). both run folders come back in
# $OUT/ab.tgz, packed after each run. an older copy may spell the runs folder --out (its old name);
# this one takes --runs.
set -uo pipefail
record=${1:?record folder}; seed=${2:?seed}; old=${3:?folder holding the older harness/ and nanopoor/}
out=${OUT:-$PWD/ab-out}
root=$PWD
mkdir -p "$out" ab
source scripts/device_setup.sh
export PYTHONUNBUFFERED=1
(cd "$old" && PYTHONPATH=/tmp/site:$root/$old python3 -m nanopoor run "$root/$record" --scale full --track docs \
   --data "$root/data/docs" --seed "$seed" --out "$root/ab/old" --timeout 280 2>&1 | tail -4)
tar czf "$out/ab.tgz" ab
PYTHONPATH=/tmp/site:$root python3 -m nanopoor run "$record" --scale full --track docs --data data/docs --seed "$seed" \
   --runs ab/new --timeout 280 2>&1 | tail -4
tar czf "$out/ab.tgz" ab
