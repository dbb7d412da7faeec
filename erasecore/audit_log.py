"""The guard's audit log: one JSON line per decision, appended, never rewritten. Pure (json, os).

    log = AuditLog("runs/toy/guard/audit.jsonl")
    log.append(record)                   # one write(2) of one line on an O_APPEND descriptor, then fsync
    records, torn = read_records(path)   # every whole record; the line numbers of any that are not

Each record is written with a single write on a descriptor opened with O_APPEND, then fsync'ed: the kernel
puts it at the end of the file whatever another writer does, and a record the machine lost power in the middle
of is at most one torn last line. A torn line is never repaired in place: the next append starts on a new line
(a newline is written first), so every whole record stays whole and readable. Nothing here opens the file
for writing any other way, truncates or renames it.

Schema (version SCHEMA_VERSION), one object per line:

    schema             "concept-erase/guard-audit/1"
    timestamp          ISO 8601, UTC, microseconds: when the decision was made
    campaign, model    the campaign whose committed concepts are guarded, and its base model
    prompt_sha256      sha256 of the prompt's UTF-8 bytes (the prompt itself is not stored)
    seed               the noise seed of the image (null when nothing was drawn)
    concepts_matched   the pre-filter's matches: [{concept, wording, kind, how, span: [start, end], score}]
    policy, on_detect  the controller's policy (touched | all) and what a detection does (block | flag)
    adapters_active    the adapters switched on for the image ([] : the base model; null when nothing was drawn)
    negative_prompt    the negative prompt given to the pipeline ("" : none)
    judge              {name, weights: {file: sha256}}: the audit's judge, the gate's own (JudgeIdentity)
    thresholds         the judge's thresholds as the gate used them ({}: a judge that decides by argmax)
    judge_scores       per erased concept: {seen: bool, score: float | null} (null when nothing was drawn)
    verdict            allowed | blocked_prompt | blocked_image | flagged
    reasons            why, in words (one line each)
    seconds            wall time of the decision (filter, generation, audit)
    image              the image file written for it, relative to the log's directory ("" : none written)
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
SCHEMA = f"concept-erase/guard-audit/{SCHEMA_VERSION}"
VERDICTS = ("allowed", "blocked_prompt", "blocked_image", "flagged")


def prompt_sha256(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class AuditRecord:
    """One decision of the guard (the module docstring has the schema)."""

    campaign: str
    model: str
    prompt_sha256: str
    seed: int | None
    concepts_matched: tuple[dict[str, Any], ...]
    policy: str
    on_detect: str
    adapters_active: tuple[str, ...] | None
    negative_prompt: str
    judge: dict[str, Any]
    thresholds: dict[str, float]
    judge_scores: dict[str, dict[str, Any]]
    verdict: str
    reasons: tuple[str, ...] = ()
    seconds: float = 0.0
    image: str = ""
    timestamp: str = field(default_factory=utc_now)
    schema: str = SCHEMA

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, got {self.verdict!r}")

    def to_json(self) -> str:
        """The record as one line of JSON (no newline inside: json.dumps escapes them)."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), allow_nan=False)


class AuditLog:
    """An append-only JSONL file (module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, record: AuditRecord) -> None:
        """Add one record at the end of the file, durable when this returns."""
        line = (record.to_json() + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if _ends_torn(self.path):
                line = b"\n" + line   # a torn last record stays as it is; this one starts on its own line
            written = os.write(fd, line)
            if written != len(line):   # a short write to a regular file: the disk is full
                raise OSError(f"audit log {self.path}: wrote {written} of {len(line)} bytes (disk full?)")
            os.fsync(fd)
        finally:
            os.close(fd)


def _ends_torn(path: Path) -> bool:
    """The file is not empty and does not end with a newline: its last record was cut short."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def read_records(path: str | Path) -> tuple[list[dict[str, Any]], list[int]]:
    """(every whole record, in order; the 1-based line numbers of lines that are not one)."""
    records, torn = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                torn.append(number)
                continue
            if isinstance(doc, dict) and doc.get("schema", "").startswith("concept-erase/guard-audit/"):
                records.append(doc)
            else:
                torn.append(number)
    return records, torn
