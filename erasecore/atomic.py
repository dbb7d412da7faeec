"""The one atomic write for every durable file: a reader sees the old content or the new, never a mix.

Temp file in the same directory (mkstemp, made readable by workers running as other users), written,
flushed, fsynced, renamed over the target, then the directory fsynced (the rename itself must reach the
disk). A failed write (a full disk, a file-size limit, a kill) leaves the old file untouched and never a
partial file under the target's name; the temp file is removed when the process lives to do it (a stray
`.<name>.*.tmp` after a kill is ignored by every reader). Plain Python.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def atomic_write(path: str | Path, chunks: Iterable[bytes]) -> str:
    """Replace `path` with the concatenated `chunks`; return their sha256 (hex). OSError if it cannot."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    digest = hashlib.sha256()
    try:
        os.fchmod(fd, 0o644)   # mkstemp's 0600 would hide the file from workers running as other users
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                digest.update(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return digest.hexdigest()


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, [text.encode("utf-8")])


def fsync_dir(directory: str | Path) -> None:
    """Make a rename in `directory` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
