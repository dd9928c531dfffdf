"""Sharded and resumable prediction: which cases a part predicts, and which are already done.

Parts are round-robin over the sorted case ids: part K of N takes cases K, K+N, K+2N, ... . The split depends only
on the case ids, not on file order or on what is already predicted, so N parts started anywhere (different machines
writing into one shared output folder) cover every case exactly once, and their sizes differ by at most one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence, TypeVar

from ..core.errors import AutosegError

T = TypeVar("T")


def check_part(num_parts: int, part_id: int) -> None:
    """Reject a part number outside 0..num_parts-1 with the fix in the message."""
    if num_parts < 1:
        raise AutosegError(f"--num-parts {num_parts}: give 1 or more parts")
    if not 0 <= part_id < num_parts:
        raise AutosegError(f"--part-id {part_id}: must be between 0 and {num_parts - 1} for --num-parts {num_parts}")


def select_part(cases: Sequence[tuple[str, T]], num_parts: int, part_id: int) -> list[tuple[str, T]]:
    """The (case, ...) items of part ``part_id`` of ``num_parts``: round-robin over the sorted case ids."""
    check_part(num_parts, part_id)
    ordered = sorted(cases, key=lambda item: item[0])
    return ordered[part_id::num_parts]


def output_complete(out_dir: Path, case: str, ending: str, save_probabilities: bool) -> bool:
    """True when the case's final outputs exist. They are written to a temporary name and renamed (the label first,
    then the probabilities), so an existing file is a complete one and a killed case counts as not done."""
    if not (out_dir / f"{case}{ending}").is_file():
        return False
    return not save_probabilities or (out_dir / f"{case}.npz").is_file()


def case_selector(num_parts: int = 1, part_id: int = 0, out_dir: str | Path | None = None,
                  skip_done: bool = False, save_probabilities: bool = False
                  ) -> Callable[[list[tuple[str, list[Path]]]], list[tuple[str, list[Path]]]]:
    """What `predict` calls on its discovered inputs [(case, channel files)]: keep this part's cases and, with
    ``skip_done`` (--continue), drop those whose outputs in ``out_dir`` are complete. Prints what it kept."""
    check_part(num_parts, part_id)
    if skip_done and out_dir is None:
        raise AutosegError("--continue needs the output folder (-o)")

    def select(inputs: list[tuple[str, list[Path]]]) -> list[tuple[str, list[Path]]]:
        mine = select_part(inputs, num_parts, part_id)
        todo = [(c, files) for c, files in mine
                if not (skip_done and output_complete(Path(out_dir), c, _ending(files[0]), save_probabilities))]
        part = f"part {part_id} of {num_parts}: " if num_parts > 1 else ""
        done = f", {len(mine) - len(todo)} already done (--continue)" if skip_done else ""
        print(f"predict {part}{len(mine)} of {len(inputs)} case(s){done}, {len(todo)} to predict", flush=True)
        return todo

    return select


def _ending(path: Path) -> str:
    from ..io.images import ending_of

    return ending_of(path)


__all__ = ["check_part", "select_part", "output_complete", "case_selector"]
