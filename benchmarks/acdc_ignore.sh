#!/usr/bin/env bash
# The ignore label on ACDC: the 48 training patients once fully labelled and once with every other slice of every
# training volume set to 'ignore' (label 4, excluded from the loss and pseudo-Dice); the same 2d configuration and
# the same schedule for both, both scored on the 12 unseen test patients (fully labelled references).
#   bash benchmarks/acdc_ignore.sh /tmp/acdc_ignore [EPOCHS] [ITERS_PER_EPOCH] [SPLIT_DIR]
# The configuration is the one a 10-minute CPU budget plan chooses for the fully labelled patients (nnU-Net's default
# 2d network takes several seconds a step on a CPU); the ignore run is given exactly that configuration, so the two
# runs differ only in their labels. Both train EPOCHS x ITERS_PER_EPOCH steps (the epoch schedule, not the clock).
# SPLIT_DIR defaults to /tmp/acdc_split (made with benchmarks/acdc_split.py if missing). The ignore-labelled copy is
# OUT/Dataset227_ACDC48ignore: rewritten labels, images as symbolic links; the shared data is not modified.
set -euo pipefail
OUT=$1; EPOCHS=${2:-40}; ITERS=${3:-50}; SPLIT=${4:-/tmp/acdc_split}
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${ACDC:-$HERE/../../shared/data/Dataset027_ACDC}
[ -d "$SPLIT/test12" ] || python "$HERE/acdc_split.py" "$DATA" "$SPLIT"
FULL=$SPLIT/Dataset127_ACDC48; IGN=$OUT/Dataset227_ACDC48ignore
mkdir -p "$IGN/labelsTr"
ln -sfn "$(cd "$FULL/imagesTr" && pwd -P)" "$IGN/imagesTr"
cp "$FULL/cases.csv" "$IGN/cases.csv"
python - "$FULL" "$IGN" <<'PY'
import json, os, sys
from pathlib import Path
import SimpleITK as sitk
full, ign = Path(sys.argv[1]), Path(sys.argv[2])
dj = json.loads((full / "dataset.json").read_text())
ignore = max(dj["labels"].values()) + 1
dj.update(name="ACDC48ignore", labels={**dj["labels"], "ignore": ignore})
for f in sorted((full / "labelsTr").glob("*.nii.gz")):
    img = sitk.ReadImage(str(f))
    a = sitk.GetArrayFromImage(img)
    a[1::2] = ignore  # every other short-axis slice unlabelled
    out = sitk.GetImageFromArray(a)
    out.CopyInformation(img)
    tmp = ign / "labelsTr" / (".tmp_" + f.name)
    sitk.WriteImage(out, str(tmp))
    os.replace(tmp, ign / "labelsTr" / f.name)
tmp = ign / "dataset.json.tmp"
tmp.write_text(json.dumps(dj, indent=2))
os.replace(tmp, ign / "dataset.json")
PY
[ -f "$OUT/full/run/plans.json" ] || autoseg plan "$FULL" --out "$OUT/full/run" -c 2d --budget 10m --device cpu
if [ ! -f "$OUT/ignore/run/plans.json" ]; then
  autoseg plan "$IGN" --out "$OUT/ignore/run.tmp" -c 2d --no-preprocess
  python - "$OUT/full/run/plans.json" "$OUT/ignore/run.tmp/plans.json" <<'PY'
import json, sys
full, ign = (json.load(open(f)) for f in sys.argv[1:])
ign["configurations"]["2d"] = full["configurations"]["2d"]  # same spacing, patch, batch, network and budget record
json.dump(ign, open(sys.argv[2], "w"), indent=2)
PY
  autoseg preprocess "$OUT/ignore/run.tmp" -c 2d
  mv "$OUT/ignore/run.tmp" "$OUT/ignore/run"
fi
for name in full ignore; do
  autoseg train "$OUT/$name/run" -c 2d -f all --epochs "$EPOCHS" --iters-per-epoch "$ITERS"
  autoseg predict "$OUT/$name/run" -i "$SPLIT/test12/imagesTs" -o "$OUT/$name/pred" -c 2d -f all
  autoseg evaluate "$OUT/$name/pred" "$SPLIT/test12/labelsTs" --dataset-json "$SPLIT/test12/dataset.json" \
    --cases "$SPLIT/test12/cases.csv" --out "$OUT/$name/eval"
done
python - "$OUT" <<'PY'
import json, sys
for name in ("full", "ignore"):
    s = json.load(open(f"{sys.argv[1]}/{name}/eval/summary.json"))
    dice = {k: round(v["dice"]["mean"], 4) for k, v in s["mean"].items()}
    print(f"{name:7s} foreground mean Dice {s['foreground_mean_dice']:.4f}  {dice}")
PY
