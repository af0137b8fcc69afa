#!/usr/bin/env bash
# every command the README shows, timed on this machine in a fresh clone, with the 1-minute load
# average beside each (a loaded 2-core machine can double a time). prints a markdown table.
#   bash scripts/time_readme.sh [CLONE_DIR]      (default: a new clone of this checkout in /tmp)
# the clone's first command installs .venv (make demo); the rest reuse it. the CPU refusals
# (full-scale runs, submit, reproduce) are timed too: how long a user waits for the one line.
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
clone=${1:-$(mktemp -d /tmp/nanopoor-readme-XXXX)/nanopoor}
[ -d "$clone/.git" ] || git clone -q "$src" "$clone"
cd "$clone"
run_id=$(ls runs | head -1)
echo "| command | exit | wall-clock | load average (1 min, at start) |"
echo "|---|---|---|---|"
t() {   # t COMMAND...: one row
  local load t0 t1 rc
  load=$(cut -d' ' -f1 /proc/loadavg)
  t0=$(date +%s.%N)
  "$@" > /tmp/time_readme.out 2>&1
  rc=$?
  t1=$(date +%s.%N)
  printf '| `%s` | %s | %.1f s | %s |\n' "$*" "$rc" "$(echo "$t1 - $t0" | bc)" "$load"
}
t make demo
t make test-fast
t make lint
t make data-docs
t .venv/bin/nanopoor run records/baseline_adamw --scale smoke
t .venv/bin/nanopoor run records/baseline_adamw --scale smoke --no-isolation
t .venv/bin/nanopoor run records/dense_muon_t4_v4 --scale full
t make submit RECORD=records/muon_3xlr
t make reproduce RECORD=records/muon_3xlr
t .venv/bin/nanopoor reproduce "runs/$run_id"
t make leaderboard
t make leaderboard-check
t make review LOG=tests/fixtures/logs/llmc_main.log
t .venv/bin/nanopoor review "runs/$run_id" --format json
t .venv/bin/nanopoor verify runs/
t .venv/bin/nanopoor compare dense_muon_t4_v4 baseline_adamw_epoch
t .venv/bin/nanopoor records
t .venv/bin/nanopoor data demo --out data/demo
t .venv/bin/nanopoor data audit data/demo
t .venv/bin/nanopoor data docs --out data/docs
t .venv/bin/nanopoor data files corpus/docs --dataset docs --out /tmp/time_readme_files
t .venv/bin/nanopoor data fineweb-edu --out /tmp/time_readme_fineweb
t .venv/bin/nanopoor run records/baseline_adamw --scale smoke --as-t4
t .venv/bin/nanopoor run records/dense_muon_t4_ddp_v6 --scale smoke --nproc 2
t .venv/bin/nanopoor run records/dense_muon_t4_ddp --scale full --nproc 2
t .venv/bin/nanopoor reproduce records/muon_3xlr --claim 1
t .venv/bin/nanopoor review tests/fixtures/logs/llmc_main.log --format json
cp -r records/demo_gpt records/my_try && sed -i '/^sha256/d; s/^name = "demo_gpt"/name = "my_try"/' records/my_try/record.toml
t .venv/bin/nanopoor freeze records/my_try
rm -rf records/my_try /tmp/time_readme_files /tmp/time_readme_fineweb
ssh-keygen -q -t ed25519 -N '' -f /tmp/time_readme_key <<< y >/dev/null 2>&1
t .venv/bin/nanopoor sign "runs/$run_id" --key /tmp/time_readme_key
git -C "$clone" status --porcelain --untracked-files=no | sed 's/^/changed: /'
