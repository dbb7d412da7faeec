"""One atomic write for every durable file: a reader sees the old content or the new, never a mix.

Temp file in the same directory, flush, fsync, os.replace, fsync of the directory (the rename itself must
reach the disk). A failed write (a full disk, a file-size limit) removes its temp file and raises; the
old file is untouched. Plain Python.
"""
from __future__ import annotations

import os
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new content."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_dir(directory: str | Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return   # platforms that cannot open a directory (Windows) have no directory fsync
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
