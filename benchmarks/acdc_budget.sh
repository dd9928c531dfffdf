#!/usr/bin/env bash
# autoseg on the benchmark split under a wall-clock budget: plan (+preprocess) -> train fold all -> predict the
# 12 unseen test patients -> evaluate. Each stage's wall time and peak RSS go to OUT/stages.tsv.
#   [CONFIG=3d_fullres] bash benchmarks/acdc_budget.sh 20m /tmp/acdc_b20 [SPLIT_DIR]
# CONFIG (default 2d) is the one configuration planned, trained and predicted.
# SPLIT_DIR defaults to /tmp/acdc_split (made here with benchmarks/acdc_split.py if missing); any folder made by
# acdc_split.py works (one Dataset*_ACDC* training folder and one test* folder), e.g. a fold of
# benchmarks/acdc_budget_cv.sh.
set -euo pipefail
BUDGET=$1; OUT=$2; SPLIT=${3:-/tmp/acdc_split}; CONFIG=${CONFIG:-2d}
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${ACDC:-$HERE/../../shared/data/Dataset027_ACDC}
[ -d "$SPLIT" ] || python "$HERE/acdc_split.py" "$DATA" "$SPLIT"
TRAIN=$(ls -d "$SPLIT"/Dataset*_ACDC*); TEST=$(ls -d "$SPLIT"/test*)
mkdir -p "$OUT"
stage() {  # name, command...
  local name=$1; shift
  /usr/bin/time -f "$name\t%e\t%M" -a -o "$OUT/stages.tsv" "$@" 2>&1 | tee "$OUT/$name.log"
}
printf "stage\tseconds\tpeak_rss_kb\n" > "$OUT/stages.tsv"
stage plan autoseg plan "$TRAIN" --out "$OUT/run" --budget "$BUDGET" --device cpu -c "$CONFIG"
stage train autoseg train "$OUT/run" -c "$CONFIG" -f all
stage predict autoseg predict "$OUT/run" -i "$TEST/imagesTs" -o "$OUT/pred" -c "$CONFIG" -f all
stage evaluate autoseg evaluate "$OUT/pred" "$TEST/labelsTs" --dataset-json "$TEST/dataset.json" \
  --cases "$TEST/cases.csv" --out "$OUT/eval"
column -t "$OUT/stages.tsv"
