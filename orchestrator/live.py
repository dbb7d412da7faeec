"""Where a running campaign is right now: the driver's live.json, and a snapshot for `erase status`/`erase watch`.

    LiveStatus(manifest)       # a loop callback: <storage_path>/live.json, rewritten at each event
    snap = snapshot(root)      # journal + live.json + the running attempt's progress.jsonl + placement.json

live.json holds the attempt in flight, its phase, when that phase began and the last progress record
the driver received, and says by its age whether the driver is alive; on the driver's own host its
lock (`.driver.lock`, an flock the kernel drops when the driver dies) says so for certain. The journal stays the truth: the
attempt in flight is its started attempt, and where that attempt is comes from its progress file. Everything is a file on storage_path, so a campaign running as a job on a cluster is
watched from any machine that mounts that storage: no Ray, no connection to the driver. Pure
(JSON and paths; the rich view is orchestrator/outputs/live_view.py).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from orchestrator.campaign import RunAttempt, concept_states
from erasecore.atomic import atomic_write_text
from erasecore.phase_progress import ProgressRecord, parse, read_records
from orchestrator.eta import Eta, InFlight, PhaseTime, estimate, from_records
from orchestrator.loop import Callbacks, PhaseOutput, RunOutcome
from orchestrator.manifest import FINISHED, STARTED, AttemptRecord, History, Manifest, attempt_dir
from orchestrator.spec import CampaignSpec

LIVE_FILE = "live.json"
DRIVER_LOCK = ".driver.lock"   # the driver's flock (orchestrator/ray/driver.py), dropped by the kernel when it dies
PLACEMENT = "placement.json"
STALE_S = 120.0   # a running campaign whose driver wrote nothing for this long is probably not running


# ---- the driver's side -------------------------------------------------------------------------

class LiveStatus(Callbacks):
    """Keeps <storage_path>/live.json: the attempt and phase in flight and the last progress record."""

    def __init__(self, manifest: Manifest, clock: Callable[[], float] = time.time, min_interval_s: float = 0.5):
        self.manifest, self.clock, self.min_interval_s = manifest, clock, min_interval_s
        self.path = manifest.root / LIVE_FILE
        self.doc: dict = {}
        self._written = 0.0

    def attempt_started(self, a: RunAttempt, request) -> None:
        now = self.clock()
        self.doc = {"campaign": self.manifest.campaign, "driver": f"pid {os.getpid()} on {socket.gethostname()}",
                    "step": a.step, "concept": a.concept, "attempt": a.attempt, "method": a.method,
                    "attempt_started": now, "phase": None, "phase_started": None, "last": None}
        self._write(force=True)

    def phase_started(self, a: RunAttempt, phase: str, before: PhaseOutput | None) -> None:
        self.doc.update(phase=phase, phase_started=self.clock(), last=None)
        self._write(force=True)

    def phase_progress(self, a: RunAttempt, phase: str, records: Sequence[ProgressRecord]) -> None:
        self.doc["last"] = json.loads(records[-1].to_json())
        self._write()

    def attempt_finished(self, a: RunAttempt, phases, decision, report, candidate) -> None:
        self.doc.update(phase=None, phase_started=None, verdict=decision.verdict)
        self._write(force=True)

    def ended(self, outcome: RunOutcome, manifest: Manifest) -> None:
        self.doc = {"campaign": self.manifest.campaign, "ended": outcome.status, "at": self.clock()}
        self._write(force=True)

    def _write(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._written < self.min_interval_s:
            return
        self.doc["updated"] = now
        try:   # readers see the old file or the new one; a failed write only leaves the view stale
            atomic_write_text(self.path, json.dumps(self.doc, sort_keys=True))
            self._written = now
        except OSError:
            pass


def read_live(root: str | os.PathLike) -> dict | None:
    try:
        doc = json.loads((Path(root) / LIVE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# ---- measurements of earlier phases ------------------------------------------------------------

def measured_phases(root: str | os.PathLike, history: History) -> list[PhaseTime]:
    """Seconds of every finished phase of the journal's finished attempts (their placement.json)."""
    out = []
    for a in history.attempts:
        if a.status != FINISHED:
            continue
        try:
            data = json.loads((Path(root) / attempt_dir(a.step, a.concept, a.attempt) / PLACEMENT).read_text())
        except (OSError, ValueError):
            continue
        for phase in ("erase", "validate"):
            p = data.get(phase) if isinstance(data, dict) else None
            if isinstance(p, dict) and not p.get("error") and isinstance(p.get("seconds"), (int, float)):
                out.append(PhaseTime(a.step, a.attempt, a.method, phase, float(p["seconds"])))
    return out


def phase_times(a: RunAttempt | AttemptRecord, phases: Sequence[PhaseOutput]) -> list[PhaseTime]:
    """The PhaseTimes of an attempt the driver just ran (failed phases left out)."""
    return [PhaseTime(a.step, a.attempt, a.method, p.phase, p.seconds) for p in phases
            if not p.error and not p.resumed]


# ---- a snapshot for the status table and the watch view ----------------------------------------

@dataclass(frozen=True)
class Row:
    step: int
    concept: str
    state: str                       # pending | running | accepted | rejected | committed | skipped
    attempts: int
    method: str                      # of the shown attempt (running, committed, else the latest)
    phase: str = ""                  # running: erase | validate | "" (between phases, or not known)
    fraction: float | None = None    # running: share of the current stage done
    progress: str = ""               # running: "120/150 steps" | "180/260 images"
    left: float | None = None        # running: seconds its phase still needs
    metrics: str = ""                # running: loss/lr/grad/rate/memory; else the gate's numbers


@dataclass(frozen=True)
class Snapshot:
    campaign: str
    status: str                       # the journal's
    rows: tuple[Row, ...]
    eta: Eta | None                   # None when the campaign is not running
    last: ProgressRecord | None       # the running phase's last record
    inflight: InFlight | None
    updated_ago: float | None         # seconds since the driver last wrote live.json
    stale: bool                       # running, but the driver has been silent for STALE_S
    root: str
    reason: str = ""                  # stopped: why the driver ended (the journal's stop_reason)
    driver: bool | None = None        # running: whether a driver holds the campaign (None: cannot tell from here)

    def status_text(self) -> str:
        """The campaign's status for a person: "stopped: <reason>", or that no driver runs a "running" journal."""
        if self.status == "stopped":
            return f"stopped: {self.reason}"
        if self.status == "running" and self.driver is False:
            ago = f" (last update {self.updated_ago:.0f}s ago)" if self.updated_ago is not None else ""
            return f"no driver is running{ago}; erase resume to continue"
        return self.status


def snapshot(spec: CampaignSpec, root: str | os.PathLike, now: float | None = None) -> Snapshot:
    """Where the campaign at `root` stands (reads the journal, live.json, progress and placement files)."""
    now = time.time() if now is None else now
    manifest = Manifest.open(root)
    history = manifest.history
    live = read_live(root)
    running = manifest.status == "running"
    inflight, done = _inflight(Path(root), history, live, now) if running else (None, [])
    records = inflight.records if inflight is not None else ()
    eta = estimate(spec, history, measured_phases(root, history) + done, inflight) if running else None
    updated = live.get("updated") if live else None
    ago = now - updated if isinstance(updated, (int, float)) else None
    stale = running and (ago is None or ago > STALE_S)
    rows = tuple(_row(history, s, inflight, records, eta) for s in concept_states(spec, history))
    return Snapshot(manifest.campaign, manifest.status, rows, eta, records[-1] if records else None,
                    inflight, ago, stale, str(root), manifest.stop_reason, driver_alive(root) if running else None)


def driver_alive(root: str | os.PathLike) -> bool | None:
    """Whether a driver holds the campaign's lock; None when this machine cannot tell.

    Asked only of a lock last taken on this host: a driver on another machine holds its flock there,
    and a shared mount need not show it. Probed with a shared lock, released at once.
    """
    try:
        f = open(Path(root) / DRIVER_LOCK, encoding="utf-8")
    except OSError:
        return None   # no driver has ever run here (or the file is unreadable)
    with f:
        holder = f.read().strip()
        if not holder.endswith(f" on {socket.gethostname()}"):
            return None
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return None
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def _inflight(root: Path, history: History, live: dict | None, now: float) -> tuple[InFlight | None, list[PhaseTime]]:
    """The journal's started attempt (the one running, or to be redone) as its progress file shows it."""
    started = [a for a in history.attempts if a.status == STARTED]
    if not started:
        return None, []
    record = max(started, key=lambda a: (a.started_at, a.step))
    records = read_records(root / attempt_dir(record.step, record.concept, record.attempt))
    if not records and live and (live.get("step"), live.get("attempt")) == (record.step, record.attempt) \
            and live.get("last"):
        last = parse(json.dumps(live["last"]))   # the progress file is unreadable here: the driver's copy
        records = [last] if last is not None else []
    return from_records(record.step, record.attempt, record.method, records, now,
                        datetime.fromisoformat(record.started_at).timestamp())


def _row(history: History, state, inflight: InFlight | None, records: tuple[ProgressRecord, ...],
         eta: Eta | None) -> Row:
    attempts = history.attempts_for(state.step)
    if inflight is not None and inflight.step == state.step:
        last = records[-1] if records else None
        counted = next((r for r in reversed(records) if r.fraction is not None), None)
        left = eta.phase_left if eta is not None else None
        return Row(state.step, state.concept, "running", len(attempts), inflight.method, inflight.phase or "",
                   counted.fraction if counted else None, _progress_text(counted) if counted else _stage(last),
                   left, record_metrics(counted or last) if (counted or last) else "")
    commit = history.commit_for(state.step)
    shown = next((a for a in attempts if commit and a.attempt == commit.attempt), None) or \
        (attempts[-1] if attempts else None)
    return Row(state.step, state.concept, state.state, len(attempts), shown.method if shown else "",
               metrics=gate_metrics(shown) if shown else "")


def _stage(record: ProgressRecord | None) -> str:
    if record is None:
        return "waiting for the worker"
    return {"start": "starting", "grid": "drawing the grid", "end": "finishing"}.get(record.stage, record.stage)


def _progress_text(r: ProgressRecord) -> str:
    stage = "" if r.stage == "train" else f"{r.stage} "
    return f"{stage}{r.done}/{r.of} {r.unit}"


def record_metrics(r: ProgressRecord) -> str:
    """The numbers of one progress record, short: loss, lr, grad norm, rate, peak memory."""
    parts = []
    if r.loss is not None:
        parts.append(f"loss {r.loss:.4g}")
    if r.lr is not None:
        parts.append(f"lr {r.lr:.2g}")
    if r.grad_norm is not None:
        parts.append(f"grad {r.grad_norm:.3g}")
    if r.stage == "train" and r.steps_per_s:
        parts.append(f"{r.steps_per_s:.2f} it/s")
    if r.images_per_s:
        parts.append(f"{r.images_per_s:.1f} img/s")
    if r.peak_mem_mb is not None:
        parts.append(f"mem {r.peak_mem_mb / 1024:.1f}G" if r.peak_mem_mb >= 1024 else f"mem {r.peak_mem_mb:.0f}M")
    return " ".join(parts)


def gate_metrics(a: AttemptRecord) -> str:
    """The gate's numbers of a judged attempt (or its first reason when it produced no report)."""
    if a.report is not None:
        r = a.report
        return f"forgetting {r.forgetting.value:.2f} retain {r.retain.value:.2f} leakage {r.leakage.value:.2f}"
    if a.decision is not None and a.decision.reasons:
        return a.decision.reasons[0][:60]
    return ""
