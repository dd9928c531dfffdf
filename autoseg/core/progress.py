"""Progress lines and plain-text tables for the terminal (no dependencies)."""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, TypeVar

T = TypeVar("T")


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
