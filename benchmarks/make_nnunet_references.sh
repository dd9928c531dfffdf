#!/usr/bin/env bash
# Regenerate tests/references/nnunet/ (nnU-Net's plans, networks and a tiny trained model with its predictions) from
# nnU-Net v2.8.1 itself; the tests that read them need no nnU-Net. Run from the repository root:
#   bash benchmarks/make_nnunet_references.sh              # all parts (about 15-25 min on 2 cores)
#   bash benchmarks/make_nnunet_references.sh plans model  # some of them: plans, networks, model
# nnU-Net lives in its own virtual environment ($NNUNET_VENV, default /tmp/nnunet_venv), created here when absent,
# with torch pinned through a constraints file so that pip keeps the CPU wheel and fetches no CUDA build.
# nnU-Net's scratch files go to $NNUNET_REFS_WORK (default /tmp/autoseg_nnunet_references; the planner dump is
# cached there under a key of benchmarks/plan_diff's generator and runner).
set -euo pipefail
venv=${NNUNET_VENV:-/tmp/nnunet_venv}
if [ ! -x "$venv/bin/nnUNetv2_predict" ]; then
  python3 -m venv "$venv"
  echo "torch==2.13.0" > "$venv/constraints.txt"
  "$venv/bin/pip" install torch==2.13.0
  "$venv/bin/pip" install -c "$venv/constraints.txt" nnunetv2==2.8.1
fi
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(plans networks model)
NNUNET_VENV=$venv PYTHONPATH=$PWD python -m benchmarks.nnunet_references --parts "${parts[@]}" \
  --work "${NNUNET_REFS_WORK:-/tmp/autoseg_nnunet_references}"
