"""The campaign journal on storage_path: manifest.json, the truth of a campaign.

Every change rewrites manifest.json whole with one atomic write (erasecore/atomic.py: temp
file in the same directory, flush, fsync, os.replace, fsync the directory), so a reader sees the old
journal or the new one, never a mix. A worker writes its candidate under
`steps/<k>-<slug>/attempt-<n>/`; the candidate exists for the campaign only once a commit
record names it. Delta paths are stored relative to storage_path so a campaign directory
can be moved. Only JSON, os, hashlib and pathlib here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from erasecore.atomic import atomic_write_text
from erasecore.codec import from_dict
from erasecore.contracts import DeltaRef, GateReport
from erasecore.errors import CommitError, ManifestError, SpecMismatchError
from erasecore.judge_check import JudgeCheck
from orchestrator.gate import GateDecision
from orchestrator.spec import CampaignSpec, resolved_yaml, spec_hash

MANIFEST = "manifest.json"
SPEC_SNAPSHOT = "spec.yaml"
FORMAT = 1
STATUSES = ("running", "finished", "halted", "cancelled", "stopped")   # stopped: the driver ended on an error
STARTED, FINISHED, DISCARDED = "started", "finished", "discarded"
COMMITTED, SKIPPED = "committed", "skipped"
COVERED = "covered"   # a step whose every member an earlier group step erased (`steps: auto`): nothing to run


# ---- records: what the journal holds, as typed values ---------------------------------------

@dataclass(frozen=True)
class AttemptRecord:
    """One attempt at one step; `status` is "started" until its result is recorded.

    An attempt the pipelined loop (orchestrator/pipeline.py) started ahead of time says what it assumed:
    `speculative` is "parent" (run on a candidate of the step before, not committed yet) or "retry" (run
    before the attempts before it were decided), and `parents` the sha256 of the deltas it was built on.
    One whose assumption failed is "discarded" (`discarded` says why) and never committed.
    """

    step: int
    concept: str
    attempt: int
    method: str
    hparams: dict[str, Any]
    status: str
    started_at: str
    finished_at: str = ""
    host: str = ""
    restarts: int = 0                      # times it was started again after a crash
    report: GateReport | None = None
    decision: GateDecision | None = None
    candidate: DeltaRef | None = None      # path relative to storage_path
    parents: tuple[str, ...] | None = None  # sha256 of the deltas it was built on (None: not recorded)
    speculative: str = ""                  # "" | "parent" | "retry"
    discarded: str = ""                    # why it was discarded (status "discarded")
    erased: DeltaRef | None = None         # the erase phase's delta, journaled when the phase ended (relative path)
    erases: int = 0                        # erase phases that ran to the end for this attempt (a redo may add one)
    # A search's confirmation of an accepted attempt on fresh seeds (orchestrator/search.py): its gate's
    # decision and report; a refused confirmation makes the attempt a rejection.
    confirmation: GateDecision | None = None
    confirm_report: GateReport | None = None


@dataclass(frozen=True)
class CommitRecord:
    step: int
    concept: str
    attempt: int
    delta: DeltaRef                        # path relative to storage_path
    metrics: dict[str, float]
    committed_at: str
    spec_hash: str


@dataclass(frozen=True)
class OutcomeRecord:
    step: int
    concept: str
    outcome: str                           # "committed" | "skipped" | "covered"
    reason: str
    at: str


@dataclass(frozen=True)
class SweepRecord:
    """A final sweep: the committed model measured on every committed concept (orchestrator/sweep.py)."""

    concepts: tuple[str, ...]              # the committed concepts it measured, in step order
    report: GateReport | None              # None when the sweep failed (error says why)
    rebounds: tuple[str, ...]              # concepts drawn again above gate.max_cumulative_acc
    error: str
    at: str


@dataclass(frozen=True)
class JudgeCheckRecord:
    """The judge self-check a campaign ran before its first erase (erasecore/judge_check.py)."""

    check: JudgeCheck
    at: str


@dataclass(frozen=True)
class History:
    """A read-only view of the journal for the state machine and status commands."""

    campaign: str
    spec_hash: str
    status: str
    attempts: tuple[AttemptRecord, ...]
    commits: tuple[CommitRecord, ...]
    outcomes: tuple[OutcomeRecord, ...]
    sweeps: tuple[SweepRecord, ...] = ()
    stop_reason: str = ""                  # status "stopped": why the driver ended (one line)
    judge_checks: tuple[JudgeCheckRecord, ...] = ()

    def judge_check_for(self, concepts: tuple[str, ...]) -> JudgeCheckRecord | None:
        """The last judge self-check of exactly these concepts (a concept added on resume needs a new one)."""
        return next((r for r in reversed(self.judge_checks)
                     if tuple(c.rates.concept for c in r.check.concepts) == tuple(concepts)), None)

    def sweep_for(self, concepts: tuple[str, ...]) -> SweepRecord | None:
        """The last sweep of exactly these committed concepts (a later commit needs a new sweep)."""
        return next((w for w in reversed(self.sweeps) if tuple(w.concepts) == tuple(concepts)), None)

    def attempts_for(self, step: int) -> tuple[AttemptRecord, ...]:
        return tuple(sorted((a for a in self.attempts if a.step == step), key=lambda a: a.attempt))

    def commit_for(self, step: int) -> CommitRecord | None:
        return next((c for c in self.commits if c.step == step), None)

    def outcome_for(self, step: int) -> OutcomeRecord | None:
        return next((o for o in self.outcomes if o.step == step), None)


# ---- paths -----------------------------------------------------------------------------------

def slug(concept: str) -> str:
    """A concept name as a directory name: lower case, runs of other characters as '-'."""
    return re.sub(r"[^a-z0-9]+", "-", concept.lower()).strip("-") or "concept"


def attempt_dir(step: int, concept: str, attempt: int) -> Path:
    """Where attempt n of step k writes its candidate, relative to storage_path."""
    return Path("steps") / f"{step}-{slug(concept)}" / f"attempt-{attempt}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---- the journal -----------------------------------------------------------------------------

class Manifest:
    """manifest.json in one campaign directory. Build with create() or open()."""

    def __init__(self, root: Path, doc: dict[str, Any]):
        self.root = Path(root)
        self._doc = doc
        self._memo: dict[tuple[type, str], Any] = {}   # records already rebuilt, by their JSON text
        self._history = _parse(doc, self.path, self._memo)   # fails early on a malformed journal

    @property
    def path(self) -> Path:
        return self.root / MANIFEST

    @staticmethod
    def exists(storage_path: str | Path) -> bool:
        return (Path(storage_path) / MANIFEST).is_file()

    @classmethod
    def create(cls, storage_path: str | Path, spec: CampaignSpec, allow_spec_change: bool = False) -> Manifest:
        """Start a campaign journal, or return the existing one if it was made from the same spec.

        An existing journal from a different spec is refused (SpecMismatchError) unless
        allow_spec_change: then the new spec is recorded and the old one kept in earlier_specs.
        """
        root = Path(storage_path)
        if cls.exists(root):
            return cls.open(root)._adopt(spec, allow_spec_change)
        root.mkdir(parents=True, exist_ok=True)
        doc = {"format": FORMAT, "campaign": spec.name, "spec_hash": spec_hash(spec),
               "spec_yaml": resolved_yaml(spec), "earlier_specs": {}, "status": "running",
               "created_at": _now(), "updated_at": _now(), "attempts": [], "commits": [], "outcomes": []}
        manifest = cls(root, doc)
        manifest._write(doc)
        atomic_write_text(root / SPEC_SNAPSHOT, doc["spec_yaml"])
        return manifest

    @classmethod
    def open(cls, storage_path: str | Path) -> Manifest:
        """Read an existing journal; ManifestError (one line) if missing or corrupt."""
        root = Path(storage_path)
        path = root / MANIFEST
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ManifestError(f"no campaign at {root}: {path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ManifestError(f"corrupt manifest {path}: {e}") from None
        return cls(root, doc)

    # -- reading --

    @property
    def history(self) -> History:
        return self._history

    @property
    def campaign(self) -> str:
        return self._doc["campaign"]

    @property
    def spec_hash(self) -> str:
        return self._doc["spec_hash"]

    @property
    def spec_yaml(self) -> str:
        return self._doc["spec_yaml"]

    @property
    def status(self) -> str:
        return self._doc["status"]

    @property
    def stop_reason(self) -> str:
        """Why the driver ended, when the status is "stopped" (one line); else ""."""
        return self._doc.get("stop_reason", "") if self.status == "stopped" else ""

    @property
    def created_at(self) -> str:
        return self._doc.get("created_at", "")

    @property
    def updated_at(self) -> str:
        return self._doc.get("updated_at", "")

    @property
    def earlier_spec_hashes(self) -> tuple[str, ...]:
        """Hashes of the specs this journal ran under before an allowed spec change."""
        return tuple(sorted(self._doc.get("earlier_specs", {})))

    def attempt_path(self, step: int, concept: str, attempt: int) -> Path:
        return self.root / attempt_dir(step, concept, attempt)

    def committed_deltas(self) -> tuple[DeltaRef, ...]:
        """Committed deltas in step order, paths joined to storage_path (ready to open)."""
        commits = sorted(self._history.commits, key=lambda c: c.step)
        return tuple(DeltaRef(str(self.root / c.delta.path), c.delta.sha256) for c in commits)

    def garbage(self) -> list[Path]:
        """Attempt directories that no commit uses and no live or pending attempt owns; safe to delete."""
        keep = {attempt_dir(c.step, c.concept, c.attempt) for c in self._history.commits}
        resolved = {o.step for o in self._history.outcomes}
        keep |= {attempt_dir(a.step, a.concept, a.attempt) for a in self._history.attempts
                 if a.step not in resolved and (a.status == STARTED or (a.decision and a.decision.committed))}
        found = sorted(p for p in (self.root / "steps").glob("*/attempt-*") if p.is_dir())
        return [p for p in found if p.relative_to(self.root) not in keep]

    # -- writing: each method is one atomic rewrite --

    def record_start(self, step: int, concept: str, attempt: int, method: str,
                     hparams: dict[str, Any], host: str = "", parents: tuple[str, ...] | None = None,
                     speculative: str = "") -> AttemptRecord:
        """Journal that attempt n of step k is starting; a crashed (still "started") attempt may start again.

        `parents` (sha256 of the deltas it builds on) and `speculative` are recorded only when given, so
        the serial loop's journal keeps its old shape."""
        self._require_open_step(step)
        doc = self._copy()
        old = _find_attempt(doc, step, attempt)
        record = {"step": step, "concept": concept, "attempt": attempt, "method": method,
                  "hparams": dict(hparams), "status": STARTED, "started_at": _now(), "finished_at": "",
                  "host": host, "restarts": 0, "report": None, "decision": None, "candidate": None}
        if parents is not None:
            record.update(parents=list(parents), speculative=speculative)
        if old is not None:
            if old["status"] != STARTED:
                raise ManifestError(f"step {step} attempt {attempt} already finished; start a new attempt number")
            if (old["concept"], old["method"], old["hparams"]) != (concept, method, record["hparams"]):
                raise ManifestError(f"step {step} attempt {attempt} was started with other settings; "
                                    "a redone attempt must repeat them")
            record["restarts"] = old["restarts"] + 1
            if parents is None and "parents" in old:   # a redo keeps what the attempt was built on
                record.update(parents=old["parents"], speculative=old.get("speculative", ""))
            record.update({k: old[k] for k in ("erased", "erases") if k in old})   # and the erase it finished
            doc["attempts"].remove(old)
        doc["attempts"].append(record)
        self._write(doc)
        return from_dict(AttemptRecord, record)

    def record_erased(self, step: int, attempt: int, candidate: DeltaRef) -> AttemptRecord:
        """Journal that a started attempt's erase phase ended with `candidate` (checked against its sha256), so a
        driver that dies during the gate resumes at the gate instead of erasing again."""
        doc = self._copy()
        record = _find_attempt(doc, step, attempt)
        if record is None or record["status"] != STARTED:
            raise ManifestError(f"step {step} attempt {attempt} is not a started attempt; cannot record its erase")
        ref = self._relative(candidate)
        self._verify(ref, "record its erase")
        record.update(erased=dataclasses.asdict(ref), erases=record.get("erases", 0) + 1)
        self._write(doc)
        return from_dict(AttemptRecord, record)

    def erased_candidate(self, step: int, attempt: int) -> tuple[DeltaRef | None, str]:
        """The journaled erase of a started attempt if its delta is on disk with the journaled sha256
        (absolute path), else None and why not ("" when no erase was journaled)."""
        record = next((a for a in self._history.attempts_for(step) if a.attempt == attempt), None)
        if record is None or record.erased is None:
            return None, ""
        try:
            self._verify(record.erased, "reuse it")
        except CommitError as e:
            return None, str(e)
        return DeltaRef(str(self.root / record.erased.path), record.erased.sha256), ""

    def record_result(self, step: int, attempt: int, decision: GateDecision, report: GateReport | None = None,
                      candidate: DeltaRef | None = None, host: str = "") -> AttemptRecord:
        """Journal the gate's decision on a started attempt (report/candidate are None if the step failed)."""
        doc = self._copy()
        record = _find_attempt(doc, step, attempt)
        if record is None or record["status"] != STARTED:
            raise ManifestError(f"step {step} attempt {attempt} is not a started attempt; cannot record a result")
        record.update(status=FINISHED, finished_at=_now(), host=host or record["host"],
                      report=dataclasses.asdict(report) if report else None,
                      decision=dataclasses.asdict(decision),
                      candidate=dataclasses.asdict(self._relative(candidate)) if candidate else None)
        self._write(doc)
        return from_dict(AttemptRecord, record)

    def record_confirmation(self, step: int, attempt: int, decision: GateDecision,
                            report: GateReport | None = None) -> AttemptRecord:
        """Journal the confirmation gate of an accepted attempt (its report None if the phase failed)."""
        doc = self._copy()
        record = _find_attempt(doc, step, attempt)
        if record is None or record["status"] != FINISHED or (record["decision"] or {}).get("verdict") != "commit":
            raise ManifestError(f"step {step} attempt {attempt} is not an accepted attempt; nothing to confirm")
        if record.get("confirmation") is not None:
            raise ManifestError(f"step {step} attempt {attempt} is already confirmed or refused")
        record.update(confirmation=dataclasses.asdict(decision),
                      confirm_report=dataclasses.asdict(report) if report else None)
        self._write(doc)
        return from_dict(AttemptRecord, record)

    def discard(self, step: int, attempt: int, reason: str) -> AttemptRecord:
        """Journal that an attempt run ahead of time rests on an assumption that failed; never committed."""
        doc = self._copy()
        record = _find_attempt(doc, step, attempt)
        if record is None or record["status"] == DISCARDED:
            raise ManifestError(f"step {step} attempt {attempt} is not a journaled, live attempt; cannot discard it")
        if any(c["step"] == step and c["attempt"] == attempt for c in doc["commits"]):
            raise ManifestError(f"step {step} attempt {attempt} is committed; a commit is never discarded")
        record.update(status=DISCARDED, discarded=reason, finished_at=record["finished_at"] or _now())
        self._write(doc)
        return from_dict(AttemptRecord, record)

    def commit(self, step: int, attempt: int, delta: DeltaRef | None = None) -> CommitRecord:
        """Publish an accepted attempt's delta, exactly once per step, after checking its sha256.

        `delta` defaults to the candidate recorded with the attempt's result.
        """
        done = self._history.commit_for(step)
        if done is not None:
            raise CommitError(f"step {step} ({done.concept}) is already committed (attempt {done.attempt})")
        self._require_open_step(step)
        doc = self._copy()
        record = _find_attempt(doc, step, attempt)
        if record is None or record["status"] != FINISHED or (record["decision"] or {}).get("verdict") != "commit":
            raise CommitError(f"step {step} attempt {attempt} was not accepted by the gate; refusing to commit")
        if (record.get("confirmation") or {}).get("verdict", "commit") != "commit":
            raise CommitError(f"step {step} attempt {attempt} was refused by its confirmation on fresh seeds; "
                              "refusing to commit")
        built_on = record.get("parents")
        committed = [c["delta"]["sha256"] for c in sorted(doc["commits"], key=lambda c: c["step"]) if c["step"] < step]
        if built_on is not None and list(built_on) != committed:
            raise CommitError(f"step {step} attempt {attempt} was built on parents that are not the committed "
                              "deltas (a speculative candidate whose parent was not committed); refusing to commit")
        ref = self._relative(delta) if delta else _delta(record["candidate"])
        if ref is None:
            raise CommitError(f"step {step} attempt {attempt} has no candidate delta to commit")
        self._verify(ref)
        now = _now()
        commit = {"step": step, "concept": record["concept"], "attempt": attempt, "delta": dataclasses.asdict(ref),
                  "metrics": metrics_summary(_report(record["report"])), "committed_at": now,
                  "spec_hash": doc["spec_hash"]}
        doc["commits"].append(commit)
        doc["outcomes"].append({"step": step, "concept": record["concept"], "outcome": COMMITTED,
                                "reason": f"attempt {attempt} ({record['method']}) passed the gate", "at": now})
        self._write(doc)
        return from_dict(CommitRecord, commit)

    def skip(self, step: int, concept: str, reason: str, outcome: str = SKIPPED) -> OutcomeRecord:
        """Journal that a concept is given up (or, COVERED, that an earlier step erased it); the campaign goes on."""
        self._require_open_step(step)
        doc = self._copy()
        outcome = {"step": step, "concept": concept, "outcome": outcome, "reason": reason, "at": _now()}
        doc["outcomes"].append(outcome)
        self._write(doc)
        return from_dict(OutcomeRecord, outcome)

    def record_sweep(self, concepts: tuple[str, ...], report: GateReport | None, rebounds: tuple[str, ...],
                     error: str = "") -> SweepRecord:
        """Journal a final sweep; it reopens nothing (commits stay as they are)."""
        doc = self._copy()
        record = {"concepts": list(concepts), "report": dataclasses.asdict(report) if report else None,
                  "rebounds": list(rebounds), "error": error, "at": _now()}
        doc.setdefault("sweeps", []).append(record)
        self._write(doc)
        return self._history.sweeps[-1]

    def record_judge_check(self, check: JudgeCheck) -> JudgeCheckRecord:
        """Journal the judge self-check's rates and verdicts (a resumed campaign does not draw them again)."""
        doc = self._copy()
        doc.setdefault("judge_checks", []).append({"check": dataclasses.asdict(check), "at": _now()})
        self._write(doc)
        return self._history.judge_checks[-1]

    def set_status(self, status: str, reason: str = "") -> None:
        """Journal the campaign's status; "stopped" keeps `reason` (why the driver ended), any other clears it."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        doc = self._copy()
        doc["status"] = status
        doc.pop("stop_reason", None)
        if status == "stopped":
            doc["stop_reason"] = " ".join(str(reason).split()) or "no reason recorded"
        self._write(doc)

    # -- internals --

    def _adopt(self, spec: CampaignSpec, allow_change: bool) -> Manifest:
        new_hash = spec_hash(spec)
        if new_hash == self.spec_hash:
            return self
        if not allow_change:
            raise SpecMismatchError(
                f"{self.root} holds campaign {self.campaign!r} started from another spec "
                f"(hash {self.spec_hash[:12]} != {new_hash[:12]}); use a new storage_path or allow the change")
        doc = self._copy()
        doc["earlier_specs"][doc["spec_hash"]] = doc["spec_yaml"]
        doc.update(campaign=spec.name, spec_hash=new_hash, spec_yaml=resolved_yaml(spec))
        self._write(doc)
        atomic_write_text(self.root / SPEC_SNAPSHOT, doc["spec_yaml"])
        return self

    def _require_open_step(self, step: int) -> None:
        outcome = self._history.outcome_for(step)
        if outcome is not None:
            raise ManifestError(f"step {step} ({outcome.concept}) is already {outcome.outcome}")

    def _relative(self, delta: DeltaRef) -> DeltaRef:
        """`delta` with its path relative to storage_path; it must lie inside it."""
        path = Path(delta.path)
        if not path.is_absolute():
            path = self.root / path
        rel = os.path.relpath(path.resolve(), self.root.resolve())
        if rel.startswith(".."):
            raise CommitError(f"delta {delta.path} lies outside the campaign directory {self.root}")
        return DeltaRef(Path(rel).as_posix(), delta.sha256)

    def _verify(self, ref: DeltaRef, what: str = "commit") -> None:
        path = self.root / ref.path
        if not path.is_file():
            raise CommitError(f"delta {path} does not exist; refusing to {what}")
        actual = sha256_file(path)
        if actual != ref.sha256:
            raise CommitError(f"delta {path} has sha256 {actual[:12]}, expected {ref.sha256[:12]}; refusing to {what}")

    def _copy(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._doc))   # plain JSON data: the C codec copies it faster than deepcopy

    def _write(self, doc: dict[str, Any]) -> None:
        """Persist `doc`, then adopt it: if the write fails, this object still matches the disk."""
        doc["updated_at"] = _now()
        text = json.dumps(doc, sort_keys=True)   # one line: the C encoder (indenting is pure Python, 10x slower)
        doc = json.loads(text)   # in memory exactly what is on disk (lists, not tuples)
        history = _parse(doc, self.path, self._memo)
        atomic_write_text(self.path, text)
        self._doc, self._history = doc, history


# ---- JSON <-> records ------------------------------------------------------------------------

def metrics_summary(report: GateReport | None) -> dict[str, float]:
    """The numbers a commit record keeps: point estimates of every gate input."""
    if report is None:
        return {}
    summary = {"forgetting": report.forgetting.value, "target_acc": report.target_acc.value,
               "base_target_acc": report.base_target_acc, "retain": report.retain.value,
               "leakage": report.leakage.value, "drift": report.drift.value, "kl": report.kl,
               "kl_base_noise": report.kl_base_noise,
               "images_generated": float(report.images_generated)}
    summary.update({f"cumulative:{c}": e.value for c, e in sorted(report.cumulative.items())})
    return summary


def _find_attempt(doc: dict[str, Any], step: int, attempt: int) -> dict[str, Any] | None:
    return next((a for a in doc["attempts"] if a["step"] == step and a["attempt"] == attempt), None)


def _report(data: dict | None) -> GateReport | None:
    return from_dict(GateReport, data) if data else None


def _delta(data: dict | None) -> DeltaRef | None:
    return from_dict(DeltaRef, data) if data else None


def _parse(doc: Any, path: Path, memo: dict[tuple[type, str], Any] | None = None) -> History:
    """The typed History of a journal document; ManifestError (one line) if it is malformed.

    `memo` keeps the records rebuilt before, by their JSON text: a write changes one or two records, and
    rebuilding every report at every write cost a quarter of a second per write at 100 steps. It is
    pruned to the records of this document."""
    seen: dict[tuple[type, str], Any] = {}

    def build(cls: type, data: Any) -> Any:
        key = (cls, json.dumps(data, sort_keys=True))
        if key not in seen:
            seen[key] = memo[key] if memo is not None and key in memo else from_dict(cls, data)
        return seen[key]

    try:
        if doc.get("format") != FORMAT:
            raise ManifestError(f"manifest {path} has format {doc.get('format')!r}; this version reads {FORMAT}")
        if doc["status"] not in STATUSES:
            raise ManifestError(f"manifest {path} has unknown status {doc['status']!r}")
        history = History(campaign=doc["campaign"], spec_hash=doc["spec_hash"], status=doc["status"],
                       attempts=tuple(build(AttemptRecord, a) for a in doc["attempts"]),
                       commits=tuple(build(CommitRecord, c) for c in doc["commits"]),
                       outcomes=tuple(build(OutcomeRecord, o) for o in doc["outcomes"]),
                       sweeps=tuple(build(SweepRecord, w) for w in doc.get("sweeps", ())),
                       judge_checks=tuple(build(JudgeCheckRecord, r) for r in doc.get("judge_checks", ())),
                       stop_reason=doc.get("stop_reason", "") if doc["status"] == "stopped" else "")
    except ManifestError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ManifestError(f"corrupt manifest {path}: {type(e).__name__}: {e}") from None
    if memo is not None:
        memo.clear()
        memo.update(seen)
    return history
