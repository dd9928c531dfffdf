#!/usr/bin/env bash
# The whole budget procedure (plan -> train fold all -> predict -> evaluate, benchmarks/acdc_budget.sh; the 2d
# configuration unless CONFIG names another) scored by patient-grouped K-fold cross-validation over every ACDC
# patient: fold k trains under the budget on the other patients and predicts its own, which nobody looked at while
# the procedure was chosen.
#   [CONFIG=3d_fullres] bash benchmarks/acdc_budget_cv.sh 20m /tmp/acdc_cv20 [K=3] [FOLD ...]
# Folds already scored (OUT/foldK/eval/summary.json) are kept, so a rerun after a kill finishes the rest. Run it
# with nothing else on the machine (or say what ran beside it). Ends with the table of benchmarks/cv_summary.py.
set -euo pipefail
BUDGET=$1; OUT=$2; K=${3:-3}; shift $(( $# < 3 ? $# : 3 ))
FOLDS=${*:-$(seq 0 $((K - 1)))}
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${ACDC:-$HERE/../../shared/data/Dataset027_ACDC}
[ -d "$DATA" ] || { echo "ACDC not found at $DATA (set ACDC=...)" >&2; exit 2; }
mkdir -p "$OUT"
for k in $FOLDS; do
  F=$OUT/fold$k
  if [ -f "$F/eval/summary.json" ]; then echo "fold $k: already scored"; continue; fi
  rm -rf "$F"
  python "$HERE/acdc_split.py" "$DATA" "$F/split" --folds "$K" --fold "$k" --dataset-id $((150 + k))
  echo "fold $k: $(date -u +%H:%M:%S) start, load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/log.txt"
  bash "$HERE/acdc_budget.sh" "$BUDGET" "$F" "$F/split"
  echo "fold $k: $(date -u +%H:%M:%S) end, load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/log.txt"
done
python "$HERE/cv_summary.py" "$OUT"/fold*
