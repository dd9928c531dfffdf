#!/usr/bin/env bash
# Region-based training on the BraTS sample: whole tumour (1,2,3,4), tumour core (1,3,4) and enhancing tumour (4),
# a sigmoid per region, the label map rebuilt in regions_class_order (edema 2, then necrosis 1, then enhancing 4;
# label 3 comes back as 1, both being core but not enhancing). plan -> train 3d_fullres fold 0 (its validation is
# scored per region) -> predict the fold's held-out cases -> evaluate per region.
#   bash benchmarks/brats_regions.sh /tmp/brats_regions [BUDGET=15m]
# On a CPU nnU-Net's 3d_fullres network takes many seconds a step, so the plan is fitted to a training budget
# (`plan --budget`), and training follows the clock.
# The region dataset is OUT/Dataset129_BraTSRegions: a new dataset.json beside symbolic links to the shared
# imagesTr/labelsTr (nothing is copied; the shared folder is not modified).
set -euo pipefail
OUT=$1; BUDGET=${2:-15m}
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "${BRATS:-$HERE/../../shared/data/Dataset029_BraTSSample}" && pwd)
DS=$OUT/Dataset129_BraTSRegions
mkdir -p "$DS"
ln -sfn "$SRC/imagesTr" "$DS/imagesTr"
ln -sfn "$SRC/labelsTr" "$DS/labelsTr"
python - "$SRC/dataset.json" "$DS/dataset.json" <<'PY'
import json, sys
dj = json.load(open(sys.argv[1]))
dj.update(name="BraTSRegions", labels={"background": 0, "whole tumor": [1, 2, 3, 4], "tumor core": [1, 3, 4],
                                       "enhancing tumor": [4]}, regions_class_order=[2, 1, 4])
json.dump(dj, open(sys.argv[2], "w"), indent=2)
PY
[ -f "$OUT/run/plans.json" ] || autoseg plan "$DS" --out "$OUT/run" -c 3d_fullres --budget "$BUDGET" --device cpu
autoseg train "$OUT/run" -c 3d_fullres -f 0
# the fold's held-out cases, predicted again from the CLI and evaluated per region
mkdir -p "$OUT/val_images"
for c in $(python -c "import json; print(' '.join(json.load(open('$OUT/run/splits.json'))[0]['val']))"); do
  ln -sfn "$SRC/imagesTr/${c}_0000.nii.gz" "$OUT/val_images/${c}_0000.nii.gz"
  ln -sfn "$SRC/imagesTr/${c}_0001.nii.gz" "$OUT/val_images/${c}_0001.nii.gz"
done
autoseg predict "$OUT/run" -i "$OUT/val_images" -o "$OUT/pred" -c 3d_fullres -f 0 --save-probabilities
autoseg evaluate "$OUT/pred" "$SRC/labelsTr" --dataset-json "$DS/dataset.json" --out "$OUT/eval"
echo "per-region Dice: $OUT/eval/summary.json (and the fold's validation: $OUT/run/3d_fullres/fold_0/validation)"
