"""The campaign loop: next_action -> erase -> validate -> gate -> journal, until done. Pure (no Ray, no torch).

    outcome = CampaignLoop(settled, manifest, executor, [ProgressLines(echo), tracking_callbacks]).run()

The executor runs a step's two phases somewhere (Ray tasks in orchestrator/ray/driver.py; in-process
or fake in tests): the loop is the same either way, so the tests drive the loop the driver runs.
Everything else that watches a campaign (progress lines, W&B tracking, the live status file) is a
Callbacks object the loop tells what happened; a callback never decides anything. The manifest is
the truth: a loop killed at any point is continued by running it again on the same journal.

Inside a phase the worker appends progress records to the attempt's progress.jsonl
(erasecore/phase_progress.py). The loop hands the executor a `watch` function for each
phase; an executor that waits (the Ray one polls every second) calls it while the phase runs, and
the loop calls it once more when the phase returns, so every record reaches `phase_progress`, the
ones written mid-phase while the phase still runs.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from orchestrator.campaign import (CommitAttempt, ConfirmAttempt, DiscardAttempt, Finished, Halted, RunAttempt,
                                   SkipConcept, confirm_request, next_action, step_request)
from erasecore.codec import from_json
from erasecore.contracts import GATE_REPORT, DeltaRef, GateReport, StepRequest
from erasecore.errors import CommitError
from erasecore.phase_progress import ProgressFollower, ProgressRecord
from orchestrator.gate import GateDecision, decide, error_decision
from orchestrator.manifest import CommitRecord, Manifest
from orchestrator.preflight import Settled
from orchestrator.sweep import Sweep, rebounds, summary, sweep_request


@dataclass(frozen=True)
class Placement:
    """Where a phase ran, as seen from inside it."""

    node_id: str
    host: str
    pid: int
    gpu_ids: tuple[str, ...]
    cuda_visible_devices: str


@dataclass(frozen=True)
class PhaseOutput:
    """A phase's value (DeltaRef or GateReport), or the one-line reason it failed."""

    phase: str
    value: Any
    error: str
    placement: Placement | None    # None when the phase never reported back (its worker died)
    seconds: float
    log: str
    resumed: bool = False          # not run now: the attempt's own earlier run of it, taken from disk and journal


@dataclass(frozen=True)
class RunOutcome:
    status: str                 # "finished" | "halted"
    reason: str
    storage_path: str
    committed: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


Watch = Callable[[], None]


def unwatched() -> None:
    return None


class Executor(Protocol):
    """Runs the phases of one attempt and reports each as a PhaseOutput (never raises for a failed phase).

    `watch` reads the phase's new progress records and tells the callbacks: call it every second or so
    while the phase runs (it is cheap: one read of the end of a small file). Not calling it is allowed:
    the loop calls it when the phase returns."""

    def erase(self, a: RunAttempt, request: StepRequest, watch: Watch = unwatched) -> PhaseOutput: ...

    def validate(self, a: RunAttempt, request: StepRequest, candidate: DeltaRef,
                 watch: Watch = unwatched) -> PhaseOutput: ...


class Callbacks:
    """What the loop tells its watchers; every method is a no-op unless overridden."""

    def attempt_started(self, a: RunAttempt, request: StepRequest) -> None: ...

    def phase_started(self, a: RunAttempt, phase: str, before: PhaseOutput | None) -> None:
        """`phase` begins; `before` is the phase that ran before it in this attempt (None for erase)."""

    def phase_progress(self, a: RunAttempt, phase: str, records: Sequence[ProgressRecord]) -> None:
        """New progress records of the running `phase`, in the order the worker wrote them."""

    def attempt_finished(self, a: RunAttempt, phases: Sequence[PhaseOutput], decision: GateDecision,
                         report: GateReport | None, candidate: DeltaRef | None) -> None: ...

    def committed(self, c: CommitAttempt, record: CommitRecord, path: Path) -> None: ...

    def event(self, text: str) -> None: ...

    def ended(self, outcome: RunOutcome, manifest: Manifest) -> None: ...


class CampaignLoop:
    """One campaign's loop; everything it knows is in the manifest."""

    def __init__(self, settled: Settled, manifest: Manifest, executor: Executor,
                 callbacks: Sequence[Callbacks] = ()):
        self.settled, self.spec, self.manifest = settled, settled.spec, manifest
        self.executor, self.callbacks = executor, list(callbacks)
        self.kinds = settled.kinds()   # concept -> kind: orders a search

    def next_action(self, history=None):
        return next_action(self.spec, self.manifest.history if history is None else history, self.kinds)

    def run(self) -> RunOutcome:
        if self.manifest.status in ("finished", "halted", "stopped"):
            self.manifest.set_status("running")   # resumed (e.g. after the spec's retry budget was raised)
        while True:
            action = self.next_action()
            if isinstance(action, RunAttempt):
                self.attempt(action)
            elif isinstance(action, ConfirmAttempt):
                self.confirm(action)
            elif isinstance(action, CommitAttempt):
                self.commit(action)
            elif isinstance(action, DiscardAttempt):   # left by a pipelined run (orchestrator/pipeline.py)
                self.manifest.discard(action.step, action.attempt, action.reason)
                self._tell("event", f"discarded step {action.step} attempt {action.attempt}: {action.reason}")
            elif isinstance(action, SkipConcept):
                self.manifest.skip(action.step, action.concept, action.reason, action.outcome)
                self._tell("event", f"{action.outcome} {action.concept}: {action.reason}")
            elif isinstance(action, Sweep):
                self.sweep(action)
            elif isinstance(action, Halted):
                return self._halt(action)
            else:
                return self._finish(action)

    def attempt(self, a: RunAttempt) -> None:
        """Journal the start, run the phases, journal the gate's decision (or the failed phase's reason)."""
        self.manifest.record_start(a.step, a.concept, a.attempt, a.method, a.hparams)
        request = step_request(a, self.settled)
        self._tell("attempt_started", a, request)
        self.record(a, request, self._phases(a, request))

    def record(self, a: RunAttempt, request: StepRequest, phases: Sequence[PhaseOutput]) -> GateDecision:
        """The gate's decision on an attempt's phases (or the failed phase's reason), journaled and told."""
        write_placement(Path(request.out_dir), phases)
        failed = next((p for p in phases if p.error), None)
        host = ", ".join(f"{p.phase}@{p.placement.host}/{p.placement.node_id[:8]}" for p in phases if p.placement)
        if failed is not None:
            decision, report, candidate = error_decision(f"{failed.phase}: {failed.error}"), None, None
        else:
            erase, validate = phases
            decision, report, candidate = decide(validate.value, self.spec.gate), validate.value, erase.value
        self.manifest.record_result(a.step, a.attempt, decision, report, candidate, host)
        self._tell("attempt_finished", a, phases, decision, report, candidate)
        return decision

    def _phases(self, a: RunAttempt, request: StepRequest) -> list[PhaseOutput]:
        erase = self.resumed_erase(a) if a.redo else None
        if erase is None:
            self._tell("phase_started", a, "erase", None)
            erase = self.erased(a, self._watched(a, request, "erase",
                                                 lambda watch: self.executor.erase(a, request, watch)))
            if erase.error:
                return [erase]
        validate = resumed_gate(a, request, erase) if a.redo else None
        if validate is None:
            self._tell("phase_started", a, "validate", erase)
            validate = self._watched(a, request, "validate",
                                     lambda watch: self.executor.validate(a, request, erase.value, watch))
        return [erase, validate]

    def confirm(self, c: ConfirmAttempt) -> GateDecision:
        """Validate an accepted attempt's candidate again, on fresh seeds; journal and tell the decision."""
        a, request = c.run, confirm_request(c, self.settled)
        record = next(r for r in self.manifest.history.attempts_for(a.step) if r.attempt == a.attempt)
        candidate = DeltaRef(str(self.manifest.root / record.candidate.path), record.candidate.sha256)
        self._tell("event", f"step {a.step} {a.concept} attempt {a.attempt} passed after a rejection: confirming "
                            f"it on fresh seeds (noise from seed {request.validation.seed_offset})")
        out = self._watched(a, request, "validate", lambda watch: self.executor.validate(a, request, candidate, watch))
        decision = error_decision(f"confirm: {out.error}") if out.error else decide(out.value, self.spec.gate)
        self.manifest.record_confirmation(a.step, a.attempt, decision, None if out.error else out.value)
        why = "" if decision.committed else ": " + "; ".join(decision.reasons)
        self._tell("event", f"step {a.step} {a.concept} attempt {a.attempt}: confirmation {decision.verdict}{why}")
        return decision

    def erased(self, a: RunAttempt, erase: PhaseOutput) -> PhaseOutput:
        """Journal an erase phase's end with its delta's sha256 (a failed one is returned as it is)."""
        if erase.error:
            return erase
        try:
            self.manifest.record_erased(a.step, a.attempt, erase.value)
        except CommitError as e:   # the worker's delta is not on disk as it said: a failed erase
            return dataclasses.replace(erase, value=None, error=str(e))
        return erase

    def resumed_erase(self, a: RunAttempt) -> PhaseOutput | None:
        """A redone attempt whose erase ended before the restart, with its delta on disk as journaled: that
        erase, taken as done (None: erase again, and the event says why when a journaled delta was lost)."""
        candidate, why = self.manifest.erased_candidate(a.step, a.attempt)
        if candidate is None:
            if why:
                self._tell("event", f"step {a.step} attempt {a.attempt}: {why}; erasing again")
            return None
        self._tell("event", f"step {a.step} attempt {a.attempt}: its erase ended before the restart "
                            f"(delta {candidate.sha256[:12]} on disk); resuming at the gate")
        return PhaseOutput("erase", candidate, "", None, 0.0, "", resumed=True)

    def _watched(self, a: RunAttempt, request: StepRequest, phase: str,
                 run: Callable[[Watch], PhaseOutput]) -> PhaseOutput:
        """Run one phase with a watch on its progress records (from the end of the file as it is now)."""
        watch = self._watcher(a, request, phase)
        output = run(watch)
        watch()   # what was written after the executor's last look
        return output

    def _watcher(self, a: RunAttempt, request: StepRequest, phase: str) -> Watch:
        """A watch on one phase's progress records, from the end of its file as it is now."""
        follower = ProgressFollower(request.out_dir, phase)
        broken: set[int] = set()

        def watch() -> None:
            records = follower.read_new()
            for i, callback in enumerate(self.callbacks):
                if not records or i in broken:
                    continue
                try:
                    callback.phase_progress(a, phase, records)
                except Exception as e:  # noqa: BLE001 - showing progress must never stop the campaign
                    broken.add(i)
                    self._tell("event", f"{type(callback).__name__} stops showing the progress of step "
                                        f"{a.step} {phase}: {type(e).__name__}: {' '.join(str(e).split())[:200]}")
        return watch

    def sweep(self, s: Sweep) -> None:
        """The final sweep as one validation phase (the last committed delta as its candidate); journaled."""
        request, candidate = sweep_request(s, self.settled)
        self._tell("event", f"final sweep of {len(s.erased_before)} committed concepts")
        out = self.executor.validate(s, request, candidate)
        report = out.value if not out.error else None
        bad = rebounds(report, self.spec.gate) if report is not None else ()
        self.manifest.record_sweep(s.erased_before, report, bad, out.error)
        self._tell("event", summary(s.erased_before, report, bad, out.error))

    def commit(self, c: CommitAttempt) -> None:
        record = self.manifest.commit(c.step, c.attempt)
        self._tell("committed", c, record, self.manifest.root / record.delta.path)

    def _halt(self, h: Halted) -> RunOutcome:
        if self.manifest.status != "cancelled":
            self.manifest.set_status("halted")
        self._tell("event", f"halted: {h.reason}")
        return self._end(RunOutcome("halted", h.reason, str(self.manifest.root)))

    def _finish(self, f: Finished) -> RunOutcome:
        self.manifest.set_status("finished")
        self._tell("event", f"finished: {len(f.committed)} committed, {len(f.skipped)} skipped")
        return self._end(RunOutcome("finished", "", str(self.manifest.root), f.committed, f.skipped))

    def _end(self, outcome: RunOutcome) -> RunOutcome:
        self._tell("ended", outcome, self.manifest)
        return outcome

    def _tell(self, name: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, name)(*args)


def resumed_gate(a: RunAttempt, request: StepRequest, erase: PhaseOutput) -> PhaseOutput | None:
    """The gate of a redone attempt whose erase was resumed, if it ended before the restart: its report is
    complete on disk (written whole, by one rename, as the validation phase's last act; a new erase of the
    attempt removes it first). None: validate (again)."""
    if not erase.resumed:
        return None
    path = Path(request.out_dir) / GATE_REPORT
    try:
        report = from_json(GateReport, path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError):
        return None
    if report.concept != a.concept:
        return None
    return PhaseOutput("validate", report, "", None, 0.0, f"resumed: {path} was complete", resumed=True)


def write_placement(out_dir: Path, phases: Sequence[PhaseOutput]) -> None:
    """Where each phase ran, beside the candidate (placement.json): for people and placement tests."""
    data = {p.phase: {"placement": asdict(p.placement) if p.placement else None, "seconds": p.seconds,
                      "error": p.error, "log": p.log} for p in phases}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "placement.json").write_text(json.dumps(data, indent=1, sort_keys=True))
