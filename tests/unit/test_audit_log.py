"""The guard's audit log (erasecore/audit_log.py): one JSON line per decision, appended, never rewritten."""
from __future__ import annotations

import json
import os
import threading

import pytest

from erasecore.audit_log import (
    SCHEMA,
    VERDICTS,
    AuditLog,
    AuditRecord,
    prompt_sha256,
    read_records,
)

FIELDS = {"schema", "timestamp", "campaign", "model", "prompt_sha256", "seed", "concepts_matched", "policy",
          "on_detect", "adapters_active", "negative_prompt", "judge", "thresholds", "judge_scores", "verdict",
          "reasons", "seconds", "image"}


def record(verdict: str = "allowed", prompt: str = "a red star", **kw) -> AuditRecord:
    base = {"campaign": "toy", "model": "toyworld", "prompt_sha256": prompt_sha256(prompt), "seed": 0,
            "concepts_matched": ({"concept": "star", "wording": "star", "kind": "name", "how": "exact",
                                  "span": [6, 10], "score": 1.0},),
            "policy": "touched", "on_detect": "block", "adapters_active": ("star",), "negative_prompt": "",
            "judge": {"name": "toyworld", "weights": {"evaluator.safetensors": "ab" * 32}}, "thresholds": {},
            "judge_scores": {"star": {"seen": False, "score": 0.01}}, "verdict": verdict,
            "reasons": ("line one\nstill one record",)}
    return AuditRecord(**{**base, **kw})


def test_each_decision_is_one_line_with_the_documented_schema(tmp_path):
    log = AuditLog(tmp_path / "sub" / "audit.jsonl")
    for verdict in VERDICTS:
        log.append(record(verdict))
    lines = log.path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(VERDICTS)
    docs = [json.loads(line) for line in lines]
    assert all(set(d) == FIELDS and d["schema"] == SCHEMA for d in docs)
    assert [d["verdict"] for d in docs] == list(VERDICTS)
    assert docs[0]["prompt_sha256"] == prompt_sha256("a red star") and "a red star" not in lines[0]
    assert docs[0]["timestamp"].endswith("+00:00") and docs[0]["reasons"] == ["line one\nstill one record"]


def test_appending_never_rewrites_what_is_there(tmp_path):
    path = tmp_path / "audit.jsonl"
    AuditLog(path).append(record())
    before, inode = path.read_bytes(), path.stat().st_ino
    AuditLog(path).append(record("flagged"))       # another writer object, as a second process would have
    after = path.read_bytes()
    assert after.startswith(before) and len(after) > len(before) and path.stat().st_ino == inode


def test_a_torn_last_line_is_left_alone_and_the_next_record_starts_on_its_own_line(tmp_path):
    path = tmp_path / "audit.jsonl"
    AuditLog(path).append(record())
    with open(path, "ab") as f:
        f.write(b'{"schema": "concept-erase/guard-audit/1", "verd')   # a record cut by a power loss
    torn = path.read_bytes()
    AuditLog(path).append(record("blocked_prompt"))
    assert path.read_bytes().startswith(torn)
    records, bad = read_records(path)
    assert [r["verdict"] for r in records] == ["allowed", "blocked_prompt"] and bad == [2]


def test_writers_at_once_interleave_whole_records(tmp_path):
    path = tmp_path / "audit.jsonl"

    def write(n: int) -> None:
        log = AuditLog(path)
        for i in range(25):
            log.append(record(prompt=f"{n}-{i}"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records, bad = read_records(path)
    assert not bad and len(records) == 100
    assert {r["prompt_sha256"] for r in records} == {prompt_sha256(f"{n}-{i}") for n in range(4) for i in range(25)}


def test_an_unknown_verdict_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="verdict"):
        record("maybe")
    assert not os.listdir(tmp_path)
