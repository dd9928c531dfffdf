#!/usr/bin/env bash
# Build .gpu/, what benchmarks/gpu_head_to_head.sh needs on a GPU machine that reaches no network (run HERE):
#   .gpu/site.tar.xz      the Python packages the machine lacks (nnU-Net v2.8.1 and its helpers, SimpleITK,
#                         nibabel, cc3d, blosc2, ...), installed by pip --target from wheels for PY (3.12,
#                         manylinux x86_64) with tests and caches removed, then xz -9: SimpleITK's 52.8 MB wheel
#                         is 27 MB this way. The machine unpacks it and puts it on PYTHONPATH (no pip needed).
#   .gpu/acdc_fold0.tar   ACDC's fold 0 of benchmarks/matrix's 3-fold split (training dataset + held-out test
#                         cases), images as lossless JPEG 2000 slices (benchmarks/gpu_data.py; rebuilt exactly)
# and checks that .gpu stays under LIMIT_MIB (the device's 64 MiB covers the working tree and .gpu together).
#   bash benchmarks/gpu_prepare.sh                     # .gpu for the GPU machine (Python 3.12)
#   PY=3.11 DEST=.gpu-cpu bash benchmarks/gpu_prepare.sh   # the same set for a dry run on this machine's Python
# TRAIN_PATIENTS=N / TEST_PATIENTS=M carry only N of the fold's 40 training and M of its 20 held-out patients
# (default: all 40 and 7, which fits 60 MiB beside the 34.5 MiB of packages),
# spread evenly over the sorted patient list (ACDC numbers patients by pathology group), when space is short.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT"
PY=${PY:-3.12}; DEST=${DEST:-.gpu}; LIMIT_MIB=${LIMIT_MIB:-60}
DATA=${DATA:-$ROOT/../shared/data/Dataset027_ACDC}
WORK=${WORK:-/tmp/gpu_prepare_$PY}
PACKAGES="nnunetv2==2.8.1 acvl-utils==0.2.6 dynamic-network-architectures==0.4.4 batchgeneratorsv2==0.3.6
batchgenerators==0.25.5 blosc2==4.15.0 ndindex==1.10.1 SimpleITK==2.5.7 nibabel==5.4.2
connected-components-3d==4.1.1 graphviz==0.21 yacs==0.1.8 ${EXTRA_PACKAGES:-}"
PLAT="--python-version $PY --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64
--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --only-binary=:all:"
mkdir -p "$WORK/wheels" "$DEST"
grep -qx "/$DEST/" .git/info/exclude 2>/dev/null || grep -qx "/$DEST/" .gitignore || echo "/$DEST/" >> "$(git rev-parse --git-path info/exclude)"

if [ -f "$DEST/site.tar.xz" ] && [ -z "${REBUILD_SITE:-}" ]; then
  echo "$DEST/site.tar.xz kept (REBUILD_SITE=1 rebuilds it)"
else
  for p in $PACKAGES; do
    name=${p%%==*}
    if ls "$WORK/wheels" | grep -qi "^$(echo "${name//-/_}" | tr A-Z a-z)-${p##*==}-"; then continue; fi
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps $PLAT -d "$WORK/wheels" "$p" 2>/dev/null ||
      python3 -m pip wheel -q --no-deps -w "$WORK/wheels" "$p"   # sdist only (acvl-utils): a pure-Python wheel
  done
  rm -rf "$WORK/site"
  # shellcheck disable=SC2086
  python3 -m pip install -q --no-deps --no-index --no-compile --target "$WORK/site" $PLAT "$WORK"/wheels/*.whl
  ( cd "$WORK/site" && rm -rf bin && find . -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} + )
  echo "site: $(du -sm "$WORK/site" | cut -f1) MB unpacked; compressing (xz ${XZ:--9}, minutes)"
  tar cf - -C "$WORK/site" . | xz "${XZ:--9}" -T1 > "$DEST/site.tar.xz.tmp" && mv "$DEST/site.tar.xz.tmp" "$DEST/site.tar.xz"
fi

PYTHONPATH=$ROOT python3 - "$DATA" "$WORK/acdc" "${TRAIN_PATIENTS:-0}" "${TEST_PATIENTS:-7}" <<'PY'
import csv, json, shutil, sys
from pathlib import Path
from benchmarks.matrix.__main__ import make_split
root, work, n_train, n_test = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
shutil.rmtree(work, ignore_errors=True)
train, test, info = make_split(root, work, 0, 3)
split = json.loads((work / "split" / "split.json").read_text())
groups = {r["case"]: r["patient"] for r in csv.DictReader(open(root / "cases.csv"))}


def keep_evenly(folder: Path, cases: list, n: int, key: str) -> None:
    """Keep n patients spread evenly over the sorted list (ACDC numbers its patients by pathology group)."""
    patients = sorted({groups[c] for c in cases})
    if not n or n >= len(patients):
        return
    kept = {patients[round(i * (len(patients) - 1) / (n - 1))] for i in range(n)} if n > 1 else {patients[0]}
    gone = [c for c in cases if groups[c] not in kept]
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        for f in (folder / sub).glob("*") if (folder / sub).is_dir() else []:
            if any(f.name.startswith(c + "_") or f.name.startswith(c + ".") for c in gone):
                f.unlink()
    dj = json.loads((folder / "dataset.json").read_text())
    dj["numTraining"] = sum(1 for c in cases if groups[c] in kept)
    (folder / "dataset.json").write_text(json.dumps(dj, indent=1))
    rows = [r for r in csv.DictReader(open(folder / "cases.csv")) if r["patient"] in kept]
    with open(folder / "cases.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    info[key + "_patients"], info[key + "_cases"] = len(kept), len(rows)


keep_evenly(train, split["train_cases"], n_train, "train")
keep_evenly(test, split["test_cases"], n_test, "test")
(work / "split" / "test").rename(work / "split" / "test_fold0")
(work / "split" / "info.json").write_text(json.dumps(info))
print("ACDC fold 0:", info)
PY
python3 benchmarks/gpu_data.py pack "$WORK/acdc/split" "$DEST/acdc_fold0.tar"

du -b "$DEST"/* | awk '{printf "%8.1f MiB  %s\n", $1 / 1048576, $2}'
total=$(du -cb "$DEST"/* | tail -1 | cut -f1)
tree=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
printf "%s: %.1f MiB, with the working tree %.1f MiB (limit %s MiB for %s)\n" "$DEST" "$(echo "$total / 1048576" | bc -l)" \
  "$(echo "($total + $tree) / 1048576" | bc -l)" "$LIMIT_MIB" "$DEST"
[ "$total" -le $((LIMIT_MIB * 1048576)) ] || { echo "$DEST is over $LIMIT_MIB MiB: set TRAIN_PATIENTS / TEST_PATIENTS lower"; exit 1; }
