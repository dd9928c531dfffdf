#!/usr/bin/env bash
# autoseg on the benchmark split under a wall-clock budget: plan (+preprocess) -> train 2d fold all -> predict the
# 12 unseen test patients -> evaluate. Each stage's wall time and peak RSS go to OUT/stages.tsv.
#   bash benchmarks/acdc_budget.sh 20m /tmp/acdc_b20 [SPLIT_DIR]
# SPLIT_DIR defaults to /tmp/acdc_split (made here with benchmarks/acdc_split.py if missing).
set -euo pipefail
BUDGET=$1; OUT=$2; SPLIT=${3:-/tmp/acdc_split}
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${ACDC:-$HERE/../../shared/data/Dataset027_ACDC}
[ -d "$SPLIT/test12" ] || python "$HERE/acdc_split.py" "$DATA" "$SPLIT"
mkdir -p "$OUT"
stage() {  # name, command...
  local name=$1; shift
  /usr/bin/time -f "$name\t%e\t%M" -a -o "$OUT/stages.tsv" "$@" 2>&1 | tee "$OUT/$name.log"
}
printf "stage\tseconds\tpeak_rss_kb\n" > "$OUT/stages.tsv"
stage plan autoseg plan "$SPLIT/Dataset127_ACDC48" --out "$OUT/run" --budget "$BUDGET" --device cpu -c 2d
stage train autoseg train "$OUT/run" -c 2d -f all
stage predict autoseg predict "$OUT/run" -i "$SPLIT/test12/imagesTs" -o "$OUT/pred" -c 2d -f all
stage evaluate autoseg evaluate "$OUT/pred" "$SPLIT/test12/labelsTs" --dataset-json "$SPLIT/test12/dataset.json" \
  --cases "$SPLIT/test12/cases.csv" --out "$OUT/eval"
column -t "$OUT/stages.tsv"
