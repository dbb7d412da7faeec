"""A single-process fine-tune's own checkpoints on the attempt's directory, so a redone attempt (its driver or
worker died mid-erase) continues from the last one instead of step 0.

The store behind jobs.training.distributed.Checkpoints when no Ray Train group provides one: every
`resources.checkpoint_every` optimizer steps the fine-tune hands it Accelerate's save_state directory; it
is copied under `<out_dir>/checkpoints/` and published by one rename, so latest() never returns a half-copied
one. Only the newest is kept. Removed once the delta is written (the delta supersedes it). Never imports Ray.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

PREFIX = "step-"


class DirectoryCheckpoints:
    def __init__(self, root: Path):
        self.root = Path(root)

    def latest(self) -> Path | None:
        found = sorted(self.root.glob(f"{PREFIX}*")) if self.root.is_dir() else []
        return found[-1] if found else None

    def save(self, step: int, directory: Path, metrics: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"{PREFIX}{step:09d}"
        tmp = self.root / f".{final.name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(directory, tmp)
        os.replace(tmp, final)
        for older in sorted(self.root.glob(f"{PREFIX}*")):
            if older != final:
                shutil.rmtree(older, ignore_errors=True)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
