"""The nnU-Net v2 raw dataset layout: ``imagesTr/<case>_<channel:04d><ending>``, ``labelsTr/<case><ending>``,
``dataset.json`` (channel_names, labels, numTraining, file_ending) and optionally ``cases.csv``.

``load_dataset`` checks the structure (cheap: file names only); ``verify_case`` checks the contents of one case
(values, shapes, spacings, NaN) and is run on every case while the fingerprint is extracted.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..labels import LabelSpec
from ..utils import AutosegError, load_json
from .images import SUPPORTED_ENDINGS, Geometry, read_case_images, read_label

REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")
# keys nnU-Net v2 and its converters write; anything else is most likely a typo of one of these
KNOWN_KEYS = set(REQUIRED_KEYS) | {"name", "description", "reference", "licence", "license", "release",
                                   "tensorImageSize", "overwrite_image_reader_writer", "regions_class_order",
                                   "dataset_name", "groups", "phases", "views", "numTest", "modality",
                                   "converted_by", "dim", "relative_path", "training", "test"}


@dataclass
class DatasetInfo:
    root: Path
    name: str
    channel_names: dict[str, str]
    labels: dict[str, int | list[int]]  # a list of values is a region
    file_ending: str
    cases: list[str]
    groups: dict[str, str] = field(default_factory=dict)  # case -> patient / group
    phases: dict[str, str] = field(default_factory=dict)  # case -> ED / ES where known
    regions_class_order: list[int] | None = None  # region labels: the value each region writes, in order

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def label_spec(self) -> LabelSpec:
        return LabelSpec.parse(self.labels, self.regions_class_order, f"{self.root / 'dataset.json'}")

    @property
    def label_values(self) -> list[int]:
        return self.label_spec.label_values

    @property
    def foreground_labels(self) -> list[int]:
        return self.label_spec.foreground_values

    def image_files(self, case: str, folder: str = "imagesTr") -> list[Path]:
        return [self.root / folder / f"{case}_{c:04d}{self.file_ending}" for c in range(self.num_channels)]

    def label_file(self, case: str, folder: str = "labelsTr") -> Path:
        return self.root / folder / f"{case}{self.file_ending}"

    def to_dict(self) -> dict:
        return {"name": self.name, "root": str(self.root), "channel_names": self.channel_names,
                "labels": self.labels, "regions_class_order": self.regions_class_order,
                "file_ending": self.file_ending, "num_cases": len(self.cases)}


def _read_dataset_json(root: Path) -> dict:
    dj_path = root / "dataset.json"
    if not dj_path.is_file():
        raise AutosegError(f"{root}: no dataset.json (expected the nnU-Net v2 raw layout: imagesTr/, labelsTr/, "
                           "dataset.json)")
    dj = load_json(dj_path)
    check_dataset_json(dj, dj_path)
    return dj


def check_dataset_json(dj, dj_path: Path) -> None:
    """Types and values of dataset.json, each wrong one an AutosegError naming the key."""
    if not isinstance(dj, dict):
        raise AutosegError(f"{dj_path}: must be a JSON object with keys {list(REQUIRED_KEYS)}, "
                           f"not a {type(dj).__name__}")
    if "modality" in dj and "channel_names" not in dj:
        raise AutosegError(f"{dj_path}: this looks like an nnU-Net v1 dataset.json; rename 'modality' to "
                           "'channel_names'")
    missing = [k for k in REQUIRED_KEYS if k not in dj]
    if missing:
        raise AutosegError(f"{dj_path}: missing key(s) {missing}")
    unknown = sorted(set(dj) - KNOWN_KEYS)
    if unknown:  # usable, but most often a misspelling the user wants to hear about
        print(f"warning: {dj_path}: unknown key(s) {unknown} are ignored", flush=True)
    if not isinstance(dj["channel_names"], dict) or not dj["channel_names"]:
        raise AutosegError(f"{dj_path}: 'channel_names' must be an object such as {{\"0\": \"MRI\"}}, "
                           f"not {dj['channel_names']!r}")
    if not isinstance(dj["numTraining"], int) or isinstance(dj["numTraining"], bool) or dj["numTraining"] < 0:
        raise AutosegError(f"{dj_path}: 'numTraining' must be a whole number of cases, not {dj['numTraining']!r}")
    if not isinstance(dj["file_ending"], str):
        raise AutosegError(f"{dj_path}: 'file_ending' must be a string such as \".nii.gz\"")
    if dj["file_ending"] not in SUPPORTED_ENDINGS:
        raise AutosegError(f"{dj_path}: file_ending {dj['file_ending']!r} is not supported ({SUPPORTED_ENDINGS})")
    spec = LabelSpec.parse(dj["labels"], dj.get("regions_class_order"), str(dj_path))
    if any(v > 32767 for v in spec.label_values):
        raise AutosegError(f"{dj_path}: label values must be integers from 0 to 32767, not {dj['labels']}")


def case_ids_in(folder: Path, file_ending: str, num_channels: int | None = None) -> list[str]:
    """Case identifiers in an images folder (``<case>_<4 digits><ending>``)."""
    pat = re.compile(r"^(.*)_(\d{4})" + re.escape(file_ending) + "$")
    ids = set()
    for p in folder.iterdir():
        if p.name.startswith("."):  # hidden and temporary files are never cases
            continue
        m = pat.match(p.name)
        if m:
            ids.add(m.group(1))
    return sorted(ids)


def _read_case_table(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    groups, phases = {}, {}
    for row in read_csv_rows(path):
        case = row.get("case")
        if not case:
            continue
        if row.get("patient"):
            groups[case] = row["patient"]
        if row.get("phase"):
            phases[case] = row["phase"]
    return groups, phases


def read_csv_rows(path: Path) -> list[dict]:
    """Rows of a UTF-8 CSV file with a header; an unreadable file is an AutosegError naming it."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f))
    except UnicodeDecodeError as e:
        raise AutosegError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 CSV") from None
    except csv.Error as e:
        raise AutosegError(f"{path}: not a valid CSV file ({e})") from None


def load_dataset(root: str | Path, group_by: str | None = None) -> DatasetInfo:
    """Read dataset.json and check that every case has all channel files and a label file.

    Patient groups (used so that one patient's cases never straddle two folds) come, in order of preference,
    from ``group_by`` (a regular expression whose first group, or whole match, is the patient id), from
    ``dataset.json['groups']`` (case -> group), or from the ``patient`` column of ``cases.csv``.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise AutosegError(f"{root}: dataset folder not found")
    dj = _read_dataset_json(root)
    ending = dj["file_ending"]
    img_dir, lab_dir = root / "imagesTr", root / "labelsTr"
    for d in (img_dir, lab_dir):
        if not d.is_dir():
            raise AutosegError(f"{root}: missing folder {d.name}/")
    channel_names = {str(k): str(v) for k, v in dj["channel_names"].items()}
    nch = len(channel_names)
    if sorted(str(k) for k in channel_names) != sorted(str(i) for i in range(nch)):
        raise AutosegError(f"{root / 'dataset.json'}: channel_names keys must be 0..{nch - 1}")
    cases = case_ids_in(img_dir, ending)
    if not cases:
        raise AutosegError(f"{img_dir}: no images named <case>_0000{ending}; the dataset is empty")
    problems = []
    for c in cases:
        for ch in range(nch):
            if not (img_dir / f"{c}_{ch:04d}{ending}").is_file():
                problems.append(f"case {c}: missing channel {ch} ({c}_{ch:04d}{ending})")
        if not (lab_dir / f"{c}{ending}").is_file():
            problems.append(f"case {c}: missing label file labelsTr/{c}{ending}")
    extra = sorted({p.name[: -len(ending)] for p in lab_dir.glob("*" + ending)
                    if not p.name.startswith(".")} - set(cases))
    for c in extra:
        problems.append(f"case {c}: label file has no image (expected imagesTr/{c}_0000{ending})")
    if int(dj["numTraining"]) != len(cases):
        problems.append(f"dataset.json says numTraining={dj['numTraining']}, but imagesTr holds {len(cases)} cases")
    if problems:
        raise AutosegError(f"{root}: dataset is not valid:\n  " + "\n  ".join(problems))

    groups: dict[str, str] = {}
    phases: dict[str, str] = {}
    if (root / "cases.csv").is_file():
        groups, phases = _read_case_table(root / "cases.csv")
    if isinstance(dj.get("groups"), dict):
        groups = {str(k): str(v) for k, v in dj["groups"].items()}
    if isinstance(dj.get("phases"), dict):
        phases = {str(k): str(v) for k, v in dj["phases"].items()}
    if group_by:
        rx = re.compile(group_by)
        groups = {}
        for c in cases:
            m = rx.search(c)
            if not m:
                raise AutosegError(f"case {c}: --group-by {group_by!r} does not match the case name")
            groups[c] = m.group(1) if m.groups() else m.group(0)
    groups = {c: groups.get(c, c) for c in cases}  # ungrouped cases are their own patient
    spec = LabelSpec.parse(dj["labels"], dj.get("regions_class_order"), str(root / "dataset.json"))
    rco = list(spec.regions_class_order) if spec.regions_class_order else None
    return DatasetInfo(root, str(dj.get("name", root.name)), channel_names, spec.to_json(), ending, cases, groups,
                       phases, rco)


def dimension_of(path: Path) -> int:
    import SimpleITK as sitk

    r = sitk.ImageFileReader()
    r.SetFileName(str(path))
    try:
        r.ReadImageInformation()
    except RuntimeError:
        return 0  # unreadable: reading the case itself gives the clear error
    return int(r.GetDimension())


def _check_dimension(ds: DatasetInfo, case: str, geom: Geometry) -> None:
    """Every case of a dataset has the dimension of the first one (a 2D file would be stretched into a volume)."""
    first = ds.cases[0]
    ref = geom.dimension if case == first else dimension_of(ds.image_files(first)[0])
    if ref and geom.dimension != ref:
        raise AutosegError(f"case {case}: the image is {geom.dimension}D but case {first} is {ref}D; every case "
                           "of a dataset must have the same dimension")


def _warn_if_odd(case: str, data: np.ndarray, seg: np.ndarray) -> None:
    """Usable but suspicious cases: said once, on stdout (which the CLI and the logs keep)."""
    if not seg.any():
        print(f"warning: case {case}: the label map is all background", flush=True)
    for c in range(data.shape[0]):
        if not data[c].any():
            print(f"warning: case {case}: channel {c} of the image is all zero", flush=True)


def verify_case(ds: DatasetInfo, case: str) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """Read one training case and check its contents; return (data, seg, geometry)."""
    data, geom = read_case_images(ds.image_files(case), case)
    _check_dimension(ds, case, geom)
    seg, lgeom = read_label(ds.label_file(case), case)
    if lgeom.shape != geom.shape:
        raise AutosegError(f"case {case}: image shape {geom.shape} (z,y,x) differs from label shape {lgeom.shape}")
    if not np.allclose(lgeom.spacing, geom.spacing, rtol=1e-3):
        raise AutosegError(f"case {case}: image spacing {geom.spacing} differs from label spacing {lgeom.spacing}")
    if not np.allclose(lgeom.origin, geom.origin, atol=1e-2) or not np.allclose(lgeom.direction, geom.direction,
                                                                                  atol=1e-3):
        raise AutosegError(f"case {case}: image and label origin/direction differ; they must share one grid")
    found = np.unique(seg)
    undeclared = sorted(set(int(v) for v in found) - set(ds.label_values))
    if undeclared:
        raise AutosegError(f"case {case}: label values {undeclared} are not declared in dataset.json labels "
                           f"{ds.labels}")
    _warn_if_odd(case, data, seg)
    return data, seg, geom


def verify_dataset(root: str | Path) -> DatasetInfo:
    """Full check of every case (structure and contents)."""
    ds = load_dataset(root)
    for c in ds.cases:
        verify_case(ds, c)
    return ds
