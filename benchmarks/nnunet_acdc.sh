#!/usr/bin/env bash
# nnU-Net v2 on the benchmark split, beside autoseg. Needs nnU-Net in its own venv (see plan_timing.sh's header):
#   python3 -m venv /tmp/nnunet_venv && /tmp/nnunet_venv/bin/pip install torch==2.13.0 && \
#   echo torch==2.13.0 > /tmp/c.txt && /tmp/nnunet_venv/bin/pip install -c /tmp/c.txt nnunetv2
# Usage:
#   bash benchmarks/nnunet_acdc.sh STEP AUTOSEG_RUN OUT [ITERATIONS]
# STEP is one of
#   plan      nnUNetv2_plan_and_preprocess on the 48 training patients (wall time and peak RSS to OUT/stages.tsv)
#   default   time a few iterations of nnU-Net's own 2d plan (its batch and patch) to see what fits a budget
#   same      add autoseg's 2d configuration as "2d_autoseg" (benchmarks/nnunet_same_config.py) and preprocess it
#   train     train 2d_autoseg, fold all, for ITERATIONS iterations (epochs of 100), nnU-Net's poly schedule
#   predict   nnUNetv2_predict the 24 test volumes with mirroring, then score them with `autoseg evaluate`
#             (FOLD=0 predicts with the fold-0 model of the speed runs, for timing only, and does not score)
# nnU-Net's trainer discovery imports timm, which fails on this CPU torch ("operator torchvision::nms does not
# exist"); training goes through benchmarks/nnunet_train.py, which builds nnUNetTrainer directly.
set -euo pipefail
STEP=$1; RUN=$2; OUT=$3; ITERS=${4:-0}
HERE=$(cd "$(dirname "$0")" && pwd)
SPLIT=${SPLIT:-/tmp/acdc_split}
VENV=${NNUNET_VENV:-/tmp/nnunet_venv}
export nnUNet_raw=$OUT/raw nnUNet_preprocessed=$OUT/pre nnUNet_results=$OUT/res
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"
[ -e "$nnUNet_raw/Dataset127_ACDC48" ] || ln -s "$SPLIT/Dataset127_ACDC48" "$nnUNet_raw/Dataset127_ACDC48"
[ -f "$OUT/stages.tsv" ] || printf "stage\tseconds\tpeak_rss_kb\n" > "$OUT/stages.tsv"
stage() { local name=$1; shift; /usr/bin/time -f "$name\t%e\t%M" -a -o "$OUT/stages.tsv" "$@" 2>&1 | tee "$OUT/$name.log"; }
PY=$VENV/bin/python
case $STEP in
  plan) stage plan "$VENV/bin/nnUNetv2_plan_and_preprocess" -d 127 -c 2d --verify_dataset_integrity -np 2 ;;
  default) stage default_plan_speed "$PY" "$HERE/nnunet_train.py" 127 2d all --epochs 1 --iters 3 --val-iters 1 \
             --no-validation ;;
  same)
    python3 "$HERE/nnunet_same_config.py" "$RUN/plans.json" "$nnUNet_preprocessed/Dataset127_ACDC48/nnUNetPlans.json"
    stage preprocess_same "$VENV/bin/nnUNetv2_preprocess" -d 127 -c 2d_autoseg -np 2 ;;
  train) stage train "$PY" "$HERE/nnunet_train.py" 127 2d_autoseg all --epochs $((ITERS / 100)) --iters 100 \
           --val-iters 5 --no-validation ;;
  predict)
    stage "predict_fold_${FOLD:-all}" "$VENV/bin/nnUNetv2_predict" -d 127 -c 2d_autoseg -f "${FOLD:-all}" \
      -i "$SPLIT/test12/imagesTs" -o "$OUT/pred_${FOLD:-all}" -device cpu -npp 1 -nps 1
    [ "${FOLD:-all}" = all ] || exit 0
    stage evaluate autoseg evaluate "$OUT/pred_all" "$SPLIT/test12/labelsTs" --dataset-json "$SPLIT/test12/dataset.json" \
      --cases "$SPLIT/test12/cases.csv" --out "$OUT/eval" ;;
  *) echo "unknown step $STEP"; exit 2 ;;
esac
