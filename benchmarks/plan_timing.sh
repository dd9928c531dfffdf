#!/usr/bin/env bash
# Plan + preprocess wall time and peak RSS: autoseg vs nnU-Net v2 on the same dataset, RUNS times each, alternating.
# Needs nnU-Net in its own virtual environment (see below). Usage:
#   bash benchmarks/plan_timing.sh ../shared/data/Dataset027_ACDC 3
# nnU-Net's environment (torch pinned so pip does not fetch a CUDA build):
#   python3 -m venv /tmp/nnunet_venv && echo "torch==2.13.0" > /tmp/c.txt
#   /tmp/nnunet_venv/bin/pip install torch==2.13.0 && /tmp/nnunet_venv/bin/pip install -c /tmp/c.txt nnunetv2
set -euo pipefail
data=$(realpath "$1"); runs=${2:-3}; venv=${NNUNET_VENV:-/tmp/nnunet_venv}
name=$(basename "$data"); id=$(echo "$name" | sed -E 's/^Dataset0*([0-9]+)_.*/\1/')
work=$(mktemp -d); mkdir -p "$work/raw" "$work/pre" "$work/res"; ln -s "$data" "$work/raw/$name"
measure() { /usr/bin/time -f "%e %M" "$@" 2>&1 >/dev/null | tail -1; }
for i in $(seq "$runs"); do
  rm -rf "$work/pre/"* "$work/run"
  n=$(nnUNet_raw=$work/raw nnUNet_preprocessed=$work/pre nnUNet_results=$work/res \
      measure "$venv/bin/nnUNetv2_plan_and_preprocess" -d "$id" --verify_dataset_integrity -np 2 2 2)
  a=$(measure autoseg plan "$data" --out "$work/run" -j 2)
  echo "run $i: nnunet ${n% *} s ${n#* } KB | autoseg ${a% *} s ${a#* } KB"
done
rm -rf "$work"
