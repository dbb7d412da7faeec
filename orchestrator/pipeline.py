"""The pipelined campaign loop: phases of several attempts in flight at once, commits still strictly in turn.

    outcome = PipelinedLoop(settled, manifest, executor, callbacks, speculative=True, parallel_attempts=3).run()

Pure, like orchestrator/loop.py, whose journal rules it keeps: next_action (orchestrator/campaign.py)
still decides every commit, discard and skip, so the commits and decisions are the serial loop's.
On top, while the head attempt (the lowest undecided attempt of the first open step) runs:

- speculation (`speculative`): once the head's candidate exists, the next step's attempt starts on it,
  i.e. next_action as if the head were committed; with `depth` d, up to d steps ahead, each on the
  candidates before it as if they were all committed. Journaled speculative="parent" with the sha256 of
  the deltas it was built on; if any of those is rejected it is discarded (and the journal refuses to
  commit an attempt whose parents are not the committed deltas).
- parallel attempts (`parallel_attempts` > 1): once a step has a rejected attempt, the next attempts of
  its retry policy start at once, each assuming the ones before it are rejected the way the last one
  was. Journaled speculative="retry"; next_action commits the lowest-numbered passing attempt and
  discards a later one whose settings the policy would not have chosen after the real decisions.
- baselines drawn ahead (`prefetch` n > 0): the base model's images of the suites of the head's step and
  the n steps after it (each assuming the steps before it commit, as speculation does) are drawn as
  "baseline" phases into the campaign's baseline cache while erases and other gates run, so a gate draws
  only its candidate's images. A gate whose baseline is being drawn waits for it (drawing it twice would
  cost more); a failed or wasted one costs nothing but its GPU time (the gate draws what the cache lacks).
  Not journaled: the cache is content-addressed and written atomically.

The executor runs phases concurrently (submit/wait/cancel: orchestrator/ray/driver.py, or in-process
fakes in tests). A loop killed at any point is continued by running either loop on the same journal.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from orchestrator.campaign import (CommitAttempt, ConfirmAttempt, DiscardAttempt, Finished, Halted, RunAttempt,
                                   SkipConcept, preferred, step_request)
from erasecore.concepts import step_members
from erasecore.contracts import DeltaRef, StepRequest
from orchestrator.gate import GateDecision
from orchestrator.loop import CampaignLoop, PhaseOutput, RunOutcome, Watch, resumed_gate, unwatched
from orchestrator.manifest import DISCARDED, STARTED, CommitRecord, History
from orchestrator.policy import Exhausted, PastAttempt, next_attempt
from orchestrator.sweep import Sweep


class ConcurrentExecutor(Protocol):
    """Starts phases without waiting; wait() hands back one finished phase (never raises for a failed one)."""

    def submit(self, a: RunAttempt, request: StepRequest, phase: str, candidate: DeltaRef | None = None,
               watch: Watch = unwatched) -> Hashable: ...

    def wait(self, tickets: Sequence[Hashable]) -> tuple[Hashable, PhaseOutput]: ...

    def cancel(self, tickets: Sequence[Hashable]) -> None: ...


@dataclass
class Flight:
    """One attempt in flight: its running phase, and the erase output once the erase is done."""

    a: RunAttempt
    request: StepRequest
    phase: str
    watch: Watch
    erase: PhaseOutput | None = None


SuiteKey = tuple[int, tuple[str, ...]]   # a step and the concepts erased before it: what its suite is built from


class PipelinedLoop(CampaignLoop):
    def __init__(self, settled, manifest, executor: ConcurrentExecutor, callbacks=(), speculative: bool = True,
                 parallel_attempts: int = 1, depth: int = 1, prefetch: int = 0):
        super().__init__(settled, manifest, executor, callbacks)
        self.speculative, self.parallel_attempts = speculative, max(1, parallel_attempts)
        self.depth = max(1, depth) if speculative else 0
        self.prefetch = max(0, prefetch)
        self.flights: dict[Hashable, Flight] = {}
        self.baselines: dict[SuiteKey, bool] = {}   # baselines started this run: True while one is drawing
        self.deferred: list[Flight] = []            # erased attempts whose gate waits for its baseline

    def run(self) -> RunOutcome:
        if self.manifest.status in ("finished", "halted", "stopped"):
            self.manifest.set_status("running")
        while True:
            head = self._settle()
            if not isinstance(head, RunAttempt):
                self._cancel_all()   # work ahead of a halt has nothing left to serve
                return self._halt(head) if isinstance(head, Halted) else self._finish(head)
            self._start(head)
            self._start_retries(head)
            self._start_speculation(head)
            self._start_baselines(head)
            if not self.flights:
                continue   # the head was decided from what a run before the restart left (resumed_gate)
            ticket, output = self.executor.wait(list(self.flights))
            self._landed(self.flights.pop(ticket), output)

    # ---- the journal's own actions, as the serial loop takes them ----

    def _settle(self) -> RunAttempt | Halted | Finished:
        """Take next_action's commits, discards and skips until it asks for a run or the campaign ends."""
        while True:
            action = self.next_action()
            if isinstance(action, ConfirmAttempt):   # blocking, like the sweep: what is in flight runs on
                self.confirm(action)
            elif isinstance(action, CommitAttempt):
                self.commit(action)
                self._discard_rest(action.step, action.attempt)
            elif isinstance(action, DiscardAttempt):
                self._discard(action.step, action.attempt, action.reason)
            elif isinstance(action, SkipConcept):
                self.manifest.skip(action.step, action.concept, action.reason, action.outcome)
                self._tell("event", f"{action.outcome} {action.concept}: {action.reason}")
            elif isinstance(action, Sweep):   # every concept settled: nothing in flight can serve any more
                self._cancel_all()
                self.sweep(action)
            else:
                return action

    def _discard_rest(self, step: int, committed: int) -> None:
        """Attempts of a committed step after the committed one were run for nothing: discard them."""
        for a in self.manifest.history.attempts_for(step):
            if a.attempt > committed and a.status != DISCARDED:
                self._discard(step, a.attempt, f"attempt {committed} of this step was committed")

    def _discard(self, step: int, attempt: int, reason: str) -> None:
        self.manifest.discard(step, attempt, reason)
        for ticket, f in list(self.flights.items()):
            if f.phase != "baseline" and (f.a.step, f.a.attempt) == (step, attempt):
                self.executor.cancel([ticket])
                del self.flights[ticket]
        self.deferred = [f for f in self.deferred if (f.a.step, f.a.attempt) != (step, attempt)]
        self._tell("event", f"discarded step {step} attempt {attempt}: {reason}")

    def _cancel_all(self) -> None:
        self.executor.cancel(list(self.flights))
        self.flights.clear()
        self.deferred.clear()
        self.baselines = dict.fromkeys(self.baselines, False)

    # ---- starting work ----

    def _attempts(self) -> list[Flight]:
        """Every attempt in flight: running a phase, or erased and waiting for its baseline."""
        return [f for f in self.flights.values() if f.phase != "baseline"] + self.deferred

    def _running(self, step: int, attempt: int) -> bool:
        return any((f.a.step, f.a.attempt) == (step, attempt) for f in self._attempts())

    def _start(self, a: RunAttempt, speculative: str = "") -> None:
        if self._running(a.step, a.attempt):
            return
        parents = None if a.redo else tuple(p.sha256 for p in a.parents)   # a redo keeps its record's
        self.manifest.record_start(a.step, a.concept, a.attempt, a.method, a.hparams, parents=parents,
                                   speculative=speculative)
        request = step_request(a, self.settled)
        self._tell("attempt_started", a, request)
        erase = self.resumed_erase(a) if a.redo else None
        if erase is not None:
            self._erase_done(Flight(a, request, "erase", unwatched, erase))
            return
        self._tell("phase_started", a, "erase", None)
        watch = self._watcher(a, request, "erase")
        ticket = self.executor.submit(a, request, "erase", None, watch)
        self.flights[ticket] = Flight(a, request, "erase", watch)

    def _start_retries(self, head: RunAttempt) -> None:
        """The head step's next attempts at once, each assuming the ones before it fail as the last one did."""
        if self.parallel_attempts <= 1:
            return
        live = [a for a in self.manifest.history.attempts_for(head.step) if a.status != DISCARDED]
        decided = [(a.confirmation or a.decision) for a in live if a.status != STARTED]
        rejected = [d for d in decided if not d.committed]
        undecided = [a for a in live if a.status == STARTED]
        if not rejected or any(d.committed for d in decided) or len(undecided) >= self.parallel_attempts:
            return   # nothing to go on yet, or a passing attempt makes every later one moot
        assumed = rejected[-1]
        past = [PastAttempt(a.method, a.hparams, (a.confirmation or a.decision) if a.status != STARTED else assumed)
                for a in live]
        settings = preferred(self.spec, self.manifest.history, head.step, self.kinds)
        nxt = next_attempt(self.spec, head.concept, past, settings)
        if isinstance(nxt, Exhausted):
            return
        number = self.manifest.history.attempts_for(head.step)[-1].attempt + 1
        self._start(dataclasses.replace(head, attempt=number, method=nxt.method, hparams=nxt.hparams, redo=False),
                    "retry")
        self._start_retries(head)

    def _start_speculation(self, head: RunAttempt) -> None:
        """The next steps' attempts, each on the candidates before it as if they were committed: up to `depth`
        steps ahead of the head, one attempt per step, each once the candidate it builds on exists."""
        history, last = self.manifest.history, head
        for _ in range(self.depth):
            candidate = self._candidate(last)
            if candidate is None:
                return   # its erase is still running (or failed): nothing to build on yet
            history = _as_committed(history, last, candidate)
            ahead = self.next_action(history)
            if isinstance(ahead, CommitAttempt):   # a speculative attempt that passed its gate already
                ahead = next(a for a in self.manifest.history.attempts_for(ahead.step) if a.attempt == ahead.attempt)
                last = RunAttempt(ahead.step, ahead.concept, ahead.attempt, ahead.method, dict(ahead.hparams), (), ())
                continue
            if isinstance(ahead, DiscardAttempt):   # built on another candidate: it cannot be committed any more
                self._discard(ahead.step, ahead.attempt, ahead.reason)
                return
            if not isinstance(ahead, RunAttempt) or ahead.step <= last.step:
                return
            if not self._running(ahead.step, ahead.attempt):
                self._start(ahead, "parent")
                return
            last = ahead

    def _start_baselines(self, head: RunAttempt) -> None:
        """The baselines of the head's step and the `prefetch` steps after it, each assuming the steps before it
        commit (a skip changes the suites after it: those baselines are wasted, never wrong); none for a step
        whose gate has started, which draws (or drew) its own."""
        if not self.prefetch:
            return
        erased = tuple(head.erased_before)
        for step in range(head.step, min(head.step + self.prefetch, len(self.spec.concepts)) + 1):
            concept = self.spec.concepts[step - 1]
            if all(m in erased for m in step_members(concept)):
                continue   # covered if the group step before it commits (`steps: auto`): no gate of its own
            if (step, erased) not in self.baselines and not self._gated(step):
                a = dataclasses.replace(head, step=step, concept=concept, attempt=0, erased_before=erased,
                                        parents=(), redo=False)
                request = step_request(a, self.settled)
                request = dataclasses.replace(request, out_dir=str(Path(request.out_dir).parent / "baseline"))
                self.flights[self.executor.submit(a, request, "baseline")] = Flight(a, request, "baseline", unwatched)
                self.baselines[(step, erased)] = True
            erased += step_members(concept)

    def _gated(self, step: int) -> bool:
        """Whether a gate of this step has started (this run or before it)."""
        return any(f.a.step == step for f in self.flights.values() if f.phase == "validate") or \
            any(a.decision is not None for a in self.manifest.history.attempts_for(step))

    def _candidate(self, a: RunAttempt) -> DeltaRef | None:
        """The attempt's candidate once its erase is done: from its flight, or from its journaled result."""
        flight = next((f for f in self._attempts() if (f.a.step, f.a.attempt) == (a.step, a.attempt)), None)
        if flight is not None:
            return flight.erase.value if flight.erase is not None else None
        record = next((r for r in self.manifest.history.attempts_for(a.step) if r.attempt == a.attempt), None)
        if record is None or record.candidate is None:
            return None
        return DeltaRef(str(self.manifest.root / record.candidate.path), record.candidate.sha256)

    # ---- a phase came back ----

    def _landed(self, f: Flight, output: PhaseOutput) -> None:
        f.watch()
        if f.phase == "baseline":
            self._baseline_landed(f, output)
            return
        if f.phase == "erase":
            output = self.erased(f.a, output)
            if not output.error:
                self._erase_done(dataclasses.replace(f, erase=output))
                return
        self._decide(f, output)

    def _erase_done(self, f: Flight) -> None:
        """The candidate exists: its gate (resumed from disk, waiting for its baseline, or started now)."""
        gate = resumed_gate(f.a, f.request, f.erase)
        if gate is not None:
            self._decide(dataclasses.replace(f, phase="validate"), gate)
        elif self.baselines.get(_suite(f.a)):
            self.deferred.append(f)   # its baseline is being drawn: the gate would draw it a second time
        else:
            self._gate(f)

    def _decide(self, f: Flight, output: PhaseOutput) -> None:
        """Journal the gate's decision on the attempt (or the failed phase's reason)."""
        decision = self.record(f.a, f.request, [p for p in (f.erase, output) if p is not None])
        if not decision.committed and not output.error:
            self._drop_built_on(f.a.step, f.erase.value.sha256, decision)

    def _gate(self, f: Flight) -> None:
        self._tell("phase_started", f.a, "validate", f.erase)
        watch = self._watcher(f.a, f.request, "validate")
        ticket = self.executor.submit(f.a, f.request, "validate", f.erase.value, watch)
        self.flights[ticket] = dataclasses.replace(f, phase="validate", watch=watch)

    def _baseline_landed(self, f: Flight, output: PhaseOutput) -> None:
        """A baseline is in the cache (or failed: its gate draws what is missing); the gates it held start."""
        key = _suite(f.a)
        self.baselines[key] = False
        if output.error:
            self._tell("event", f"baseline of step {f.a.step} not drawn ahead ({output.error}); its gate draws it")
        waiting = [d for d in self.deferred if _suite(d.a) == key]
        self.deferred = [d for d in self.deferred if _suite(d.a) != key]
        for d in waiting:
            self._gate(d)

    def _drop_built_on(self, step: int, sha256: str, decision: GateDecision) -> None:
        """Speculative attempts on a rejected candidate can never be committed: stop them now."""
        for a in self.manifest.history.attempts:
            if a.step > step and a.status != DISCARDED and a.parents and sha256 in a.parents:
                self._discard(a.step, a.attempt, f"its parent, step {step}'s candidate, was rejected "
                                                 f"({', '.join(decision.failed) or decision.verdict})")


def _as_committed(history: History, head: RunAttempt, candidate: DeltaRef) -> History:
    """The journal as it would read if the head attempt's candidate were committed now."""
    commit = CommitRecord(head.step, head.concept, head.attempt, candidate, {}, "", history.spec_hash)
    return dataclasses.replace(history, commits=history.commits + (commit,))


def _suite(a: RunAttempt) -> SuiteKey:
    return a.step, tuple(a.erased_before)

