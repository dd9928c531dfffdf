"""Writing files safely: atomic writes through a temporary file and a rename, clean-up of the temporary files a
killed writer left, the refusal to overwrite inputs, and a full disk reported as an error a user can act on."""
from __future__ import annotations

import errno
import os
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterable

from .errors import AutosegError
from .faults import fault_point

TEMP_MARK = ".autoseg-tmp-"  # in every temporary file name, so that leftovers of a kill -9 can be recognised


def _is_disk_full(e: BaseException, folder: Path) -> bool:
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(e, (OSError, RuntimeError)):
        return False
    # torch.save says RuntimeError("... unexpected pos ..."), SimpleITK RuntimeError("... could not write ...")
    if any(s in str(e) for s in ("unexpected pos", "file write failed", "No space left")):
        return True
    try:
        return shutil.disk_usage(folder).free < 16 * 2 ** 20
    except OSError:
        return False


def atomic_write_bytes(path: str | os.PathLike, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """Call ``write(tmp_path)`` on a temporary file in the same folder, then rename it onto ``path``.

    A crash leaves either the old file or the new one, never a half-written one. ``suffix`` is the temporary
    name's ending, for writers that choose the format from the file name (pass the real ending). A full disk
    becomes an AutosegError naming the file (the temporary file is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path, suffix)
    try:
        write(tmp)
        fault_point("before_rename")
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if _is_disk_full(e, path.parent):
            raise AutosegError(f"{path}: could not be written, the disk is full (free space in {path.parent} "
                               "and run the command again; finished files are kept)") from None
        raise


def _create_temp(path: Path, suffix: str) -> str:
    """A new hidden file beside ``path``, created with mode 0o666 so that the process umask applies (mkstemp makes
    private files; reading the umask would mean changing it)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}{TEMP_MARK}{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete temporary files a killed writer left in ``folder`` (call only while holding its lock)."""
    n = 0
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".") and TEMP_MARK in p.name and p.is_file():
                p.unlink(missing_ok=True)
                n += 1
    return n


def refuse_overwriting_inputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike]) -> None:
    """Raise if any output file would replace (or is a link to) one of the input files."""
    def key(p: Path) -> tuple:
        p = Path(p)
        try:
            st = p.stat()
            return (st.st_dev, st.st_ino)
        except OSError:
            return (str(p.resolve()),)

    ins = {}
    for p in inputs:
        ins[key(Path(p))] = Path(p)
        ins[(str(Path(p).resolve()),)] = Path(p)
    for o in outputs:
        o = Path(o)
        hit = ins.get(key(o)) or ins.get((str(o.resolve()),))
        if hit is not None:
            raise AutosegError(f"{o}: this output would replace the input file {hit}; choose another output folder")
