#!/usr/bin/env bash
# nnU-Net v2.8.1's default trainer against autoseg on one GPU for the same wall time, ACDC fold 0 (2d).
# On the GPU machine (no network; needs .gpu/ from benchmarks/gpu_prepare.sh, carried), from the repo root:
#   bash benchmarks/gpu_head_to_head.sh                       # device tool: carry [".gpu"], timeout 600 s
# Each tool plans the fold's 40 training patients itself (2d: nnU-Net's plan_and_preprocess; autoseg's plan with a
# budget of SECONDS_EACH on the GPU, so its schedule ends with the time) and trains fold "all" for SECONDS_EACH of
# wall time (nnU-Net: its own trainer, 250 iterations + 50 validation batches per epoch, torch.compile as it does by
# default on a GPU, its poly schedule fitted to the time by benchmarks/nnunet_train.py --seconds; autoseg: its
# budget). Both models then predict the held-out patients carried (7 of the fold's 20: see gpu_prepare.sh) with
# mirroring, and `autoseg evaluate` scores both.
# Prints seconds per epoch, iterations and Dice per class; writes $OUT (or $WORK/results): head_to_head.md/.json,
# stages.tsv and the two training logs.
# Dry run on a CPU (tiny): PYTHON=<python without SimpleITK & co> GPU_DIR=.gpu-cpu DEVICE=cpu SECONDS_EACH=60 \
#   NNUNET_BATCH=2 NNUNET_VAL_ITERS=2 NP=2 bash benchmarks/gpu_head_to_head.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT"
GPU_DIR=${GPU_DIR:-.gpu}; DEVICE=${DEVICE:-cuda}; SECONDS_EACH=${SECONDS_EACH:-120}; NP=${NP:-12}
PY=${PYTHON:-python3}; WORK=${WORK:-/tmp/h2h}; RES=${OUT:-$WORK/results}; ID=327
export PYTHONUNBUFFERED=1
start=$(date +%s)
mark() { echo "[h2h $(( $(date +%s) - start )) s] $*"; }
rm -rf "$WORK/site" "$WORK/data" "$WORK/nnunet" "$WORK/run" "$WORK"/pred_* "$WORK"/eval_*
mkdir -p "$WORK/site" "$RES"
printf "stage\tseconds\n" > "$RES/stages.tsv"
stage() {  # stage NAME CMD...: run, log to WORK/NAME.log, time to stages.tsv
  local name=$1 t0 ms; shift; t0=$(date +%s%N); mark "$name"
  "$@" > "$WORK/$name.log" 2>&1 || { tail -30 "$WORK/$name.log"; mark "$name failed"; exit 1; }
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))  # no bc on the GPU image
  printf "%s\t%d.%d\n" "$name" $((ms / 1000)) $((ms % 1000 / 100)) >> "$RES/stages.tsv"
}
nn() {  # an nnU-Net console script by name, from the unpacked site (no bin/ there)
  "$PY" -c 'import sys; from importlib.metadata import entry_points
(ep,) = entry_points(group="console_scripts", name=sys.argv[1]); sys.argv = sys.argv[1:]; sys.exit(ep.load()())' "$@"
}

stage unpack_site "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' \
  "$GPU_DIR/site.tar.xz" "$WORK/site"  # Python's lzma: no xz binary needed there
export PYTHONPATH=$WORK/site:$ROOT
stage unpack_data "$PY" benchmarks/gpu_data.py unpack "$GPU_DIR/acdc_fold0.tar" "$WORK/data"
TRAIN=$WORK/data/Dataset027_ACDC_fold0; TEST=$WORK/data/test_fold0
"$PY" -c "import torch, SimpleITK, nnunetv2, autoseg; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
[ "$DEVICE" = cpu ] && PRED_ARGS=(-npp 1 -nps 1) || PRED_ARGS=()

export nnUNet_raw=$WORK/nnunet/raw nnUNet_preprocessed=$WORK/nnunet/pre nnUNet_results=$WORK/nnunet/res
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"
ln -s "$TRAIN" "$nnUNet_raw/Dataset${ID}_ACDCf0"
stage nnunet_plan nn nnUNetv2_plan_and_preprocess -d $ID -c 2d -np "$NP"
stage autoseg_plan "$PY" -m autoseg.cli plan "$TRAIN" --out "$WORK/run" -c 2d --budget "${SECONDS_EACH}s" \
  --device "$DEVICE" -j "$NP"
stage nnunet_train "$PY" benchmarks/nnunet_train.py $ID 2d all --device "$DEVICE" --seconds "$SECONDS_EACH" \
  --val-iters "${NNUNET_VAL_ITERS:-50}" --no-validation ${NNUNET_BATCH:+--batch-size "$NNUNET_BATCH"}
stage autoseg_train "$PY" -m autoseg.cli train "$WORK/run" -c 2d -f all --device "$DEVICE" --no-validation
stage nnunet_predict nn nnUNetv2_predict -d $ID -c 2d -f all -i "$TEST/imagesTs" -o "$WORK/pred_nnunet" \
  -device "$DEVICE" "${PRED_ARGS[@]}"
stage autoseg_predict "$PY" -m autoseg.cli predict "$WORK/run" -i "$TEST/imagesTs" -o "$WORK/pred_autoseg" -c 2d \
  -f all --device "$DEVICE"
for t in nnunet autoseg; do
  stage "evaluate_$t" "$PY" -m autoseg.cli evaluate "$WORK/pred_$t" "$TEST/labelsTs" --dataset-json \
    "$TEST/dataset.json" --out "$WORK/eval_$t"
done
cp "$WORK/nnunet_train.log" "$WORK/autoseg_train.log" "$RES/"
"$PY" benchmarks/head_to_head_summary.py "$WORK" "$RES" "$SECONDS_EACH" "$DEVICE"
mark "done"
