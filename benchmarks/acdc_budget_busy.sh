#!/usr/bin/env bash
# The 20-minute ACDC budget procedure on a busy machine: a second CPU-heavy process (benchmarks/busy_threads.py's
# load: the same training step in a loop, with every core) starts 30 s before `acdc_budget.sh` and runs until it
# ends, so planning, training and prediction all share the machine with it.
#   bash benchmarks/acdc_budget_busy.sh BUDGET OUT SPLIT_DIR PLANS_FOR_LOAD
# e.g. bash benchmarks/acdc_budget_busy.sh 20m /tmp/acdc_busy2/fold0 /tmp/acdc_cv20/fold0/split \
#          /tmp/acdc_cv20/fold0/run/plans.json
set -euo pipefail
BUDGET=$1; OUT=$2; SPLIT=$3; LOAD_PLANS=$4
HERE=$(cd "$(dirname "$0")" && pwd)
python -c "
import multiprocessing as mp, os, sys
sys.path.insert(0, '$HERE')
import busy_threads
busy_threads._load('$LOAD_PLANS', '2d', os.cpu_count() or 1, mp.Event())
" &
LOAD=$!
trap 'kill $LOAD 2>/dev/null || true' EXIT
sleep 30
bash "$HERE/acdc_budget.sh" "$BUDGET" "$OUT" "$SPLIT"
