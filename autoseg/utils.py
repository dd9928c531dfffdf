"""Small helpers shared by every stage: atomic writes, JSON, progress lines."""
from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np

T = TypeVar("T")


class AutosegError(Exception):
    """An error a user can act on: the message names the file or case and the fix."""


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_bytes(path: str | os.PathLike, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """Call ``write(tmp_path)`` on a temporary file in the same folder, then rename it onto ``path``.

    A crash leaves either the old file or the new one, never a half-written one. ``suffix`` is the temporary
    name's ending, for writers that choose the format from the file name (pass the real ending).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path, suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _create_temp(path: Path, suffix: str) -> str:
    """A new hidden file beside ``path``, created with mode 0o666 so that the process umask applies (mkstemp makes
    private files; reading the umask would mean changing it)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


def save_json(obj: Any, path: str | os.PathLike) -> None:
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n"

    def _w(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write_bytes(path, _w)


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise AutosegError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise AutosegError(f"{path}: not valid JSON ({e})") from None


def save_npy(arr: np.ndarray, path: str | os.PathLike) -> None:
    def _w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, arr)

    atomic_write_bytes(path, _w)


def progress(items: Iterable[T], total: int | None = None, desc: str = "", stream=None) -> Iterator[T]:
    """A dependency-free progress bar; one line per update when the stream is not a terminal."""
    stream = stream or sys.stderr
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)  # type: ignore[arg-type]
    tty = hasattr(stream, "isatty") and stream.isatty()
    start = time.time()
    last_print = 0.0
    n = 0
    for item in items:
        yield item
        n += 1
        now = time.time()
        if not tty and now - last_print < 5 and n != total:
            continue
        last_print = now
        rate = n / max(now - start, 1e-9)
        if total:
            width = 30
            done = int(width * n / total)
            eta = (total - n) / rate if rate > 0 else 0
            line = f"{desc} [{'#' * done}{'.' * (width - done)}] {n}/{total} {now - start:5.1f}s eta {eta:5.1f}s"
        else:
            line = f"{desc} {n} {now - start:5.1f}s"
        stream.write(("\r" + line) if tty else (line + "\n"))
        stream.flush()
    if tty and n:
        stream.write("\n")


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table a person can read in a terminal."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for j, r in enumerate(cells):
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:.4f}" if abs(c) < 1000 else f"{c:.1f}"
    if isinstance(c, (list, tuple)):
        return "x".join(_fmt(v) if not isinstance(v, float) else f"{v:.4g}" for v in c)
    return str(c)
