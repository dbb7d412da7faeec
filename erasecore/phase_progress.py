"""Progress from inside a running phase: small JSON-lines records appended to the attempt directory.

    worker (jobs/):  progress = ProgressWriter(out_dir, "erase", enabled=distributed.is_main())
                     progress.write(stage="train", step=120, total=150, loss=0.0123, lr=5e-4, ...)
    driver:          follower = ProgressFollower(out_dir, "erase")   # at the end of the file as it is now
                     follower.read_new() -> [ProgressRecord, ...]    # the complete lines written since

One file per attempt, `<out_dir>/progress.jsonl`, both phases in it (each record names its phase).
A record is one line written with one write() call and flushed, so a reader that takes only complete
lines never sees half a record; only one process writes it at a time (rank 0 of a worker group, the
validator), so appends never interleave. Writing costs no randomness and no device sync beyond the
`.item()` the caller already does; a failed write is ignored (progress never fails a step).
Plain Python (the core): the worker writes it without Ray, the driver and `erase status` read it.

Stages: "start" (the phase's worker began), "train" (an optimizer step: step of total), "baseline" /
"candidate" (images generated of images_total), "grid", "end" (ok or the error).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

PROGRESS_FILE = "progress.jsonl"
IMAGE_STAGES = ("baseline", "candidate", "grid")


@dataclass(frozen=True)
class ProgressRecord:
    """One line of progress.jsonl; only the fields a stage has are set."""

    t: float                         # wall clock (time.time()) when it was written
    phase: str                       # erase | validate
    stage: str                       # start | train | baseline | candidate | grid | end
    step: int | None = None          # optimizer steps done (train)
    total: int | None = None         # optimizer steps of the phase
    loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    steps_per_s: float | None = None
    samples_per_s: float | None = None
    images: int | None = None        # images generated in this stage
    images_total: int | None = None  # images this stage generates at most (early stop may end it sooner)
    images_per_s: float | None = None
    peak_mem_mb: float | None = None  # GPU: max allocated; CPU: the process's peak RSS
    ok: bool | None = None           # end: whether the phase's work succeeded
    note: str = ""                   # start: method / what runs; end: the error's first line

    @property
    def done(self) -> int | None:
        return self.step if self.stage == "train" else self.images

    @property
    def of(self) -> int | None:
        return self.total if self.stage == "train" else self.images_total

    @property
    def unit(self) -> str:
        return "steps" if self.stage == "train" else "images"

    @property
    def fraction(self) -> float | None:
        """Share of this stage done, 0..1; None for a stage that counts nothing."""
        if self.done is None or not self.of:
            return None
        return max(0.0, min(1.0, self.done / self.of))

    @property
    def rate(self) -> float | None:
        """Units (steps or images) per second of this stage so far."""
        return self.steps_per_s if self.stage == "train" else self.images_per_s

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if v is not None and v != ""}
        return json.dumps(data, sort_keys=True, allow_nan=False)


_FIELDS = {f.name for f in fields(ProgressRecord)}


def parse(line: str | bytes) -> ProgressRecord | None:
    """A record from one line; None for a line that is not one (unknown keys are ignored)."""
    try:
        data = json.loads(line)
        if not isinstance(data, dict):
            return None
        return ProgressRecord(**{k: v for k, v in data.items() if k in _FIELDS})
    except (ValueError, TypeError):
        return None


def progress_path(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / PROGRESS_FILE


class ProgressWriter:
    """Appends records for one phase; disabled (every call a no-op) on ranks other than 0."""

    def __init__(self, out_dir: str | os.PathLike, phase: str, enabled: bool = True, clock=time.time):
        self.path, self.phase, self.enabled, self.clock = progress_path(out_dir), phase, enabled, clock

    def write(self, stage: str, **values: Any) -> ProgressRecord | None:
        if not self.enabled:
            return None
        record = ProgressRecord(t=self.clock(), phase=self.phase, stage=stage,
                                **{k: _plain(v) for k, v in values.items()})
        try:
            line = (record.to_json() + "\n").encode("utf-8")
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)   # one write of one line: a reader never sees half of it
            finally:
                os.close(fd)
        except (OSError, ValueError):   # a full disk or a NaN loss costs a progress line, never the step
            return None
        return record


class NullProgress(ProgressWriter):
    """Progress nobody reads (standalone use of a method, tests)."""

    def __init__(self):
        super().__init__(".", "", enabled=False)


def _plain(value: Any) -> Any:
    """Numbers as Python floats/ints (a 0-d tensor or numpy scalar arrives as its .item())."""
    if hasattr(value, "item") and not isinstance(value, (int, float, str, bool)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):   # NaN is not JSON
        return None
    return value


def read_records(out_dir: str | os.PathLike, phase: str | None = None) -> list[ProgressRecord]:
    """Every complete record in the attempt's progress file (of one phase if given); [] if there is none."""
    try:
        data = progress_path(out_dir).read_bytes()
    except OSError:
        return []
    complete = data[:data.rfind(b"\n") + 1]
    records = (parse(line) for line in complete.splitlines() if line.strip())
    return [r for r in records if r is not None and (phase is None or r.phase == phase)]


def current_run(records: list[ProgressRecord]) -> list[ProgressRecord]:
    """The records since the last "start": a phase re-run (a retried worker) starts over."""
    starts = [i for i, r in enumerate(records) if r.stage == "start"]
    return records[starts[-1]:] if starts else records


class ProgressFollower:
    """Follows one phase's records in an attempt's progress file, from where the file ends when it is made."""

    def __init__(self, out_dir: str | os.PathLike, phase: str):
        self.path, self.phase = progress_path(out_dir), phase
        try:
            self.offset = self.path.stat().st_size   # earlier records (a crashed run of the attempt) are not news
        except OSError:
            self.offset = 0

    def read_new(self) -> list[ProgressRecord]:
        """Records of this phase completed since the last call (a trailing partial line waits for its end)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        records = (parse(line) for line in data[:end].splitlines() if line.strip())
        return [r for r in records if r is not None and r.phase == self.phase]
