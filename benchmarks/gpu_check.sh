#!/usr/bin/env bash
# GPU check: the phantom through plan -> train (2d and 3d_fullres, AMP) -> predict -> evaluate on a CUDA device,
# then the budget path: plan --budget BUDGET on the GPU -> train 2d under it (AdamW, by the clock) -> predict.
# Usage: bash benchmarks/gpu_check.sh OUT_DIR [EPOCHS] [ITERS] [BUDGET]
set -euo pipefail
out=${1:-/tmp/autoseg_gpu}; epochs=${2:-10}; iters=${3:-50}; budget=${4:-2m}
python3 - "$out" <<'PY'
import sys
from autoseg.datasets.phantom import make_phantom_dataset
make_phantom_dataset(sys.argv[1] + "/data", n_train_patients=10, n_test_patients=4, seed=0, size=160)
PY
python3 -m autoseg.cli plan "$out/data" --out "$out/run" -j 8
for c in 2d 3d_fullres; do
  python3 -m autoseg.cli train "$out/run" -c $c -f 0 --epochs "$epochs" --iters-per-epoch "$iters" --val-iters 10 --device cuda
  python3 -m autoseg.cli predict "$out/run" -i "$out/data/imagesTs" -o "$out/pred_$c" -c $c -f 0 --device cuda
  python3 -m autoseg.cli evaluate "$out/pred_$c" "$out/data/labelsTs" --dataset-json "$out/data/dataset.json"
done
python3 -m autoseg.cli plan "$out/data" --out "$out/budget" --budget "$budget" --device cuda -c 2d -j 8
python3 -m autoseg.cli train "$out/budget" -c 2d -f 0 --device cuda
python3 -m autoseg.cli predict "$out/budget" -i "$out/data/imagesTs" -o "$out/pred_budget" -c 2d -f 0 --device cuda
python3 -m autoseg.cli evaluate "$out/pred_budget" "$out/data/labelsTs" --dataset-json "$out/data/dataset.json"
