"""The nnU-Net v2 raw dataset layout: ``imagesTr/<case>_<file:04d><ending>``, ``labelsTr/<case><ending>``,
``dataset.json`` (channel_names, labels, numTraining, file_ending) and optionally ``cases.csv``.

A case's channels are the channels of its image files in file order, as nnU-Net counts them: one file per channel
(``_0000``, ``_0001``, ...), or fewer files that each hold several channels, as nnU-Net writes colour images (one RGB
``<case>_0000.png`` for ``channel_names`` R, G, B; an RGBA file is four channels, alpha included). Every case of a
dataset is written the same way.

``load_dataset`` checks the structure (cheap: file names only); ``verify_case`` checks the contents of one case
(values, shapes, spacings, NaN) and is run on every case while the fingerprint is extracted.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import AutosegError
from ..core.jsonio import load_json
from .images import SUPPORTED_ENDINGS, Geometry, read_case_images, read_label
from .labels import LabelSpec

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
    files_per_case: int | None = None  # image files per case; None: one per channel

    @property
    def num_files(self) -> int:
        """Image files per case: fewer than the channels when a file holds several (an RGB PNG holds three)."""
        return self.files_per_case or self.num_channels

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
        return [self.root / folder / f"{case}_{c:04d}{self.file_ending}" for c in range(self.num_files)]

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
    return sorted(case_files_in(folder, file_ending))


def case_files_in(folder: Path, file_ending: str) -> dict[str, dict[int, Path]]:
    """{case: {file index: path}} for the ``<case>_<4 digits><ending>`` files of an images folder."""
    pat = re.compile(r"^(.*)_(\d{4})" + re.escape(file_ending) + "$")
    out: dict[str, dict[int, Path]] = {}
    for p in folder.iterdir():
        if p.name.startswith("."):  # hidden and temporary files are never cases
            continue
        m = pat.match(p.name)
        if m:
            out.setdefault(m.group(1), {})[int(m.group(2))] = p
    return out


def channels_in_file(path: Path) -> int:
    """Channels an image file holds, from its header: components per pixel (RGB 3, RGBA 4: nnU-Net keeps alpha as a
    channel); 0 when the header cannot be read (reading the case gives the clear error)."""
    import SimpleITK as sitk

    r = sitk.ImageFileReader()
    r.SetFileName(str(path))
    try:
        r.ReadImageInformation()
    except RuntimeError:
        return 0
    return int(r.GetNumberOfComponents())


def _kind(n: int) -> str:
    return {1: "1 channel", 3: "3 channels, RGB", 4: "4 channels, RGBA"}.get(n, f"{n} channels")


def case_channel_files(case: str, present: dict[int, Path], channel_names: list[str], ending: str,
                       declared_in: str = "dataset.json") -> tuple[list[Path], list[str]]:
    """(the case's image files in channel order, problems). One file per channel needs no header read; fewer files
    than channels are read (header only) to see whether they hold the declared channels (an RGB file holds three)."""
    nch = len(channel_names)
    if not present:
        return [], [f"case {case}: no image files (expected {case}_0000{ending})"]
    k = max(present) + 1
    gaps = [i for i in range(k) if i not in present]
    if k > nch:
        return [], [f"case {case}: image files _0000 to _{k - 1:04d}, but {declared_in} declares {nch} channel(s) "
                    f"{list(channel_names)}: remove the extra files or declare their channels"]
    if gaps:
        return [], [f"case {case}: missing channel {i} ({case}_{i:04d}{ending})" for i in gaps]
    files = [present[i] for i in range(k)]
    if k == nch:
        return files, []  # one file per channel: each is checked to hold one when the case is read
    counts = [channels_in_file(f) for f in files]
    if 0 in counts or sum(counts) == nch:  # an unreadable file is reported when the case is read
        return files, []
    if all(c == 1 for c in counts):
        return [], [f"case {case}: missing channel {i} ({case}_{i:04d}{ending})" for i in range(k, nch)]
    held = ", ".join(f"{f.name}: {_kind(c)}" for f, c in zip(files, counts))
    return [], [f"case {case}: its image files hold {sum(counts)} channels ({held}), but {declared_in} declares {nch} "
                f"{list(channel_names)}; declare one channel_names entry per channel (an RGBA file's alpha "
                "is a channel, as in nnU-Net) or save the images without the extra channels"]


def _layout(files: list[Path], nch: int) -> str:
    if len(files) == nch:
        return f"{nch} image file(s), one channel each"
    return f"{len(files)} image file(s) holding {nch} channels ({', '.join(f.name for f in files)})"


def mixed_layout_problems(files_of: dict[str, list[Path]], nch: int) -> list[str]:
    """Cases written differently from the others (one RGB file here, three one-channel files there): refused, since
    a dataset's cases must share one layout; the most common layout is the reference."""
    by_count: dict[int, list[str]] = {}
    for case, files in files_of.items():
        by_count.setdefault(len(files), []).append(case)
    if len(by_count) < 2:
        return []
    ref = max(by_count, key=lambda n: (len(by_count[n]), -n))
    ref_case = by_count[ref][0]
    return [f"case {c}: {_layout(files_of[c], nch)}, but {len(by_count[ref])} case(s) such as {ref_case} have "
            f"{_layout(files_of[ref_case], nch)}; write every case the same way (nnU-Net's colour convention: one "
            f"RGB <case>_0000 file per case)" for n, cs in sorted(by_count.items()) if n != ref for c in cs]


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
    present = case_files_in(img_dir, ending)
    cases = sorted(present)
    if not cases:
        raise AutosegError(f"{img_dir}: no images named <case>_0000{ending}; the dataset is empty")
    problems = []
    files_of: dict[str, list[Path]] = {}
    for c in cases:
        files, bad = case_channel_files(c, present[c], list(channel_names.values()), ending)
        problems += bad
        if files:
            files_of[c] = files
        if not (lab_dir / f"{c}{ending}").is_file():
            problems.append(f"case {c}: missing label file labelsTr/{c}{ending}")
    extra = sorted({p.name[: -len(ending)] for p in lab_dir.glob("*" + ending)
                    if not p.name.startswith(".")} - set(cases))
    for c in extra:
        problems.append(f"case {c}: label file has no image (expected imagesTr/{c}_0000{ending})")
    problems += mixed_layout_problems(files_of, nch)
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
    n_files = len(files_of[cases[0]])
    return DatasetInfo(root, str(dj.get("name", root.name)), channel_names, spec.to_json(), ending, cases, groups,
                       phases, rco, None if n_files == nch else n_files)


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
    data, geom = read_case_images(ds.image_files(case), case, ds.num_channels)
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
