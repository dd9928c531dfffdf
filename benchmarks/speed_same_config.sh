#!/usr/bin/env bash
# Training speed at an identical configuration: nnU-Net's trainer on "2d_autoseg" (autoseg's budget configuration,
# added by `nnunet_acdc.sh same`) versus `autoseg train` on the same plan, fold 0, alternating, REPEATS times.
# Each run is 2 epochs x ITERS iterations + 1 validation iteration; the warm (second) epoch's time is compared.
#   bash benchmarks/speed_same_config.sh AUTOSEG_RUN NNUNET_OUT [REPEATS=3] [ITERS=40]
set -euo pipefail
RUN=$1; OUT=$2; REPEATS=${3:-3}; ITERS=${4:-40}
HERE=$(cd "$(dirname "$0")" && pwd)
VENV=${NNUNET_VENV:-/tmp/nnunet_venv}
export nnUNet_raw=$OUT/raw nnUNet_preprocessed=$OUT/pre nnUNet_results=$OUT/res
RES=$OUT/speed.tsv
printf "run\ttool\twarm_epoch_seconds\titerations_per_second\n" > "$RES"
for r in $(seq "$REPEATS"); do
  "$VENV/bin/python" "$HERE/nnunet_train.py" 127 2d_autoseg 0 --epochs 2 --iters "$ITERS" --val-iters 1 \
    --no-validation > "$OUT/speed_nnunet_$r.log" 2>&1
  t=$(grep -o "Epoch time: [0-9.]*" "$OUT/speed_nnunet_$r.log" | tail -1 | awk '{print $3}')
  printf "%s\tnnU-Net\t%s\t%s\n" "$r" "$t" "$(python3 -c "print(round($ITERS/$t, 3))")" >> "$RES"
  rm -rf "$RUN/2d/fold_0"
  autoseg train "$RUN" -c 2d -f 0 --epochs 2 --iters-per-epoch "$ITERS" --val-iters 1 --no-validation \
    > "$OUT/speed_autoseg_$r.log" 2>&1
  t=$(python3 -c "import json;print(round(json.loads(open('$RUN/2d/fold_0/log.jsonl').read().splitlines()[-1])['epoch_seconds'],2))")
  printf "%s\tautoseg\t%s\t%s\n" "$r" "$t" "$(python3 -c "print(round($ITERS/$t, 3))")" >> "$RES"
  rm -rf "$RUN/2d/fold_0"
done
column -t "$RES"
python3 - "$RES" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
med = {t: statistics.median(float(r["warm_epoch_seconds"]) for r in rows if r["tool"] == t) for t in ("nnU-Net", "autoseg")}
print(f"median warm epoch: nnU-Net {med['nnU-Net']:.2f} s, autoseg {med['autoseg']:.2f} s, "
      f"ratio autoseg/nnU-Net {med['autoseg'] / med['nnU-Net']:.2f}")
PY
