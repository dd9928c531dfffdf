#!/usr/bin/env bash
# Does the budget planner's choice hold from one plan to the next? Plans the same dataset N times (planning only:
# fingerprint + timed steps) and prints the configuration each chose, with its timed step and predicted steps.
#   bash benchmarks/budget_repeat.sh ../shared/data/Dataset027_ACDC /tmp/budget_repeat [N=5] [BUDGET=20m]
set -euo pipefail
DS=$1; OUT=$2; N=${3:-5}; BUDGET=${4:-20m}
mkdir -p "$OUT"
for i in $(seq 1 "$N"); do
  rm -rf "$OUT/plan$i"
  autoseg plan "$DS" --out "$OUT/plan$i" --budget "$BUDGET" --device cpu -c 2d --no-preprocess > "$OUT/plan$i.log" 2>&1
  python - "$OUT/plan$i/plans.json" "$i" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["configurations"]["2d"]
b = c["budget"]
print(f"plan {sys.argv[2]}: spacing {c['spacing'][-1]:.3f} patch {'x'.join(map(str, c['patch_size']))} batch "
      f"{c['batch_size']} features {c['architecture']['arch_kwargs']['features_per_stage'][0]}  "
      f"{b['seconds_per_step']:.3f} s/step in {b.get('precision', 'fp32')}, ~{b['expected_steps']} steps")
PY
done
