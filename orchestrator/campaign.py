"""The campaign state machine: from the spec and the journal, the one thing to do next. Pure.

A driver (Ray, or a test) loops until Finished or Halted:

    while True:
        action = next_action(spec, manifest.history)
        RunAttempt    -> manifest.record_start(...); run step_request(action, spec) on a worker;
                         manifest.record_result(step, attempt, decide(report, spec.gate), report, delta)
                         (a step that raised: record_result(..., error_decision(message)))
        ConfirmAttempt -> validate the attempt's candidate again on fresh seeds (confirm_request);
                         manifest.record_confirmation(step, attempt, decide(report, spec.gate), report)
        CommitAttempt -> manifest.commit(step, attempt)
        DiscardAttempt -> manifest.discard(step, attempt, reason)   (only after a pipelined run)
        SkipConcept   -> manifest.skip(step, concept, reason)
        Sweep         -> run the final sweep (validation.final_sweep, orchestrator/sweep.py);
                         manifest.record_sweep(...)
        Halted        -> manifest.set_status("halted") (unless cancelled); stop
        Finished      -> manifest.set_status("finished"); stop

Per concept (step k = its 1-based position in spec.concepts), in order:
pending -> running (erase + validate, one worker job) -> accepted -> committed
                                                      -> rejected -> retry | skipped | halted
With a search (orchestrator/search.py), an attempt accepted after a rejection of its concept is confirmed
on fresh seeds between accepted and committed; a refused confirmation counts as a rejection.
An attempt journaled "started" but never finished (a crash) is redone with the same number
and settings (at-least-once); a committed step is never redone (exactly-once commit).
An attempt the pipelined loop ran ahead of time (orchestrator/pipeline.py) counts only while what it
assumed holds: it was built on exactly the committed deltas (`parents`), and, for a retry run early,
the retry policy picks its settings given the decisions before it; otherwise it is discarded.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Union

from erasecore import catalog
from erasecore.concepts import step_members
from erasecore.contracts import DeltaRef, StepRequest
from erasecore.errors import ManifestError
from orchestrator.manifest import COVERED, DISCARDED, SKIPPED, STARTED, AttemptRecord, History, attempt_dir
from orchestrator import search
from orchestrator.policy import Exhausted, PastAttempt, next_attempt
from orchestrator.search import Setting
from orchestrator.preflight import Settled, with_settled_validation
from orchestrator.spec import CampaignSpec
from orchestrator.sweep import Sweep


@dataclass(frozen=True)
class RunAttempt:
    """Run attempt n of step k on a worker."""

    step: int
    concept: str
    attempt: int
    method: str
    hparams: dict[str, Any]
    erased_before: tuple[str, ...]   # concepts committed at earlier steps, in order
    parents: tuple[DeltaRef, ...]    # their deltas, paths relative to storage_path
    redo: bool = False               # a crashed attempt, run again with the same number


@dataclass(frozen=True)
class CommitAttempt:
    """The gate accepted this attempt but its commit is not journaled yet (e.g. the driver died)."""

    step: int
    concept: str
    attempt: int


@dataclass(frozen=True)
class ConfirmAttempt:
    """The gate accepted `run` after its concept had a rejection: measure its candidate again on fresh seeds."""

    run: RunAttempt

    @property
    def step(self) -> int:
        return self.run.step


@dataclass(frozen=True)
class DiscardAttempt:
    """An attempt run ahead of time whose assumption failed: journal it as discarded, never commit it."""

    step: int
    concept: str
    attempt: int
    reason: str


@dataclass(frozen=True)
class SkipConcept:
    step: int
    concept: str
    reason: str
    outcome: str = SKIPPED   # COVERED: an earlier group step erased every member (`steps: auto`)


@dataclass(frozen=True)
class Halted:
    reason: str
    step: int = 0
    concept: str = ""


@dataclass(frozen=True)
class Finished:
    committed: tuple[str, ...]
    skipped: tuple[str, ...]


Action = Union[RunAttempt, ConfirmAttempt, CommitAttempt, DiscardAttempt, SkipConcept, Sweep, Halted, Finished]


@dataclass(frozen=True)
class ConceptState:
    """Where one concept stands, for `erase status`."""

    step: int
    concept: str
    state: str        # pending | running | accepted | rejected | committed | skipped
    attempts: int


def next_action(spec: CampaignSpec, history: History, kinds: Mapping[str, str] | None = None) -> Action:
    """The next thing the driver must do; Finished once every concept is committed or skipped.
    `kinds` (concept -> kind, from the concept set) orders a search; None: every concept one kind."""
    if history.status == "cancelled":
        return Halted("campaign cancelled")
    _check_consistent(spec, history)
    erased: list[str] = []
    parents: list[DeltaRef] = []
    for step, concept in enumerate(spec.concepts, start=1):
        commit = history.commit_for(step)
        if commit is not None:
            erased.extend(step_members(concept))   # a group step erased each of its members
            parents.append(commit.delta)
            continue
        if history.outcome_for(step) is not None:
            continue   # skipped, or covered
        if all(m in erased for m in step_members(concept)):
            return SkipConcept(step, concept, "erased by the group step before it", COVERED)
        settings = preferred(spec, history, step, kinds or {})
        return _step_action(spec, history, step, concept, tuple(erased), tuple(parents), settings)
    skipped = tuple(dict.fromkeys(m for o in sorted(history.outcomes, key=lambda o: o.step) if o.outcome == SKIPPED
                                  for m in step_members(o.concept) if m not in erased))
    return _end_action(spec, history, tuple(erased), tuple(parents), skipped)


def _end_action(spec: CampaignSpec, history: History, erased: tuple[str, ...], parents: tuple[DeltaRef, ...],
                skipped: tuple[str, ...]) -> Action:
    """Every concept settled: the final sweep if asked for and not yet run on these commits, then the end."""
    mode = spec.validation.final_sweep
    if mode == "none" or not erased:
        return Finished(erased, skipped)
    done = history.sweep_for(erased)
    if done is None:
        return Sweep(len(spec.concepts) + 1, erased, parents)
    if mode == "halt" and done.rebounds:
        return Halted(f"final sweep: committed concepts rebound ({', '.join(done.rebounds)}); nothing is reopened")
    return Finished(erased, skipped)


def _step_action(spec: CampaignSpec, history: History, step: int, concept: str,
                 erased: tuple[str, ...], parents: tuple[DeltaRef, ...], preferred: tuple[Setting, ...]) -> Action:
    every = history.attempts_for(step)
    past: list[PastAttempt] = []
    for a in (a for a in every if a.status != DISCARDED):   # in attempt order, as the serial loop ran them
        why = _broken_assumption(spec, concept, a, past, parents, preferred)
        if why:
            return DiscardAttempt(step, concept, a.attempt, why)
        if a.status == STARTED:
            return RunAttempt(step, concept, a.attempt, a.method, dict(a.hparams), erased, parents, redo=True)
        decision = a.confirmation or a.decision   # a refused confirmation is the attempt's rejection
        if a.decision is not None and a.decision.committed:
            if a.confirmation is None and search.needs_confirmation(spec, len(past)):
                return ConfirmAttempt(RunAttempt(step, concept, a.attempt, a.method, dict(a.hparams), erased, parents))
            if decision.committed:
                return CommitAttempt(step, concept, a.attempt)
        past.append(PastAttempt(a.method, a.hparams, decision, _seconds(a)))
    nxt = next_attempt(spec, concept, past, preferred)
    if isinstance(nxt, Exhausted):
        if nxt.outcome == "halt":
            return Halted(nxt.reason, step, concept)
        return SkipConcept(step, concept, nxt.reason)
    number = (every[-1].attempt if every else 0) + 1
    return RunAttempt(step, concept, number, nxt.method, nxt.hparams, erased, parents)


def _broken_assumption(spec: CampaignSpec, concept: str, a: AttemptRecord, past: list[PastAttempt],
                       parents: tuple[DeltaRef, ...], preferred: tuple[Setting, ...] = ()) -> str:
    """Why an attempt run ahead of time no longer counts ("" if it does; attempts run in turn always do)."""
    if a.parents is not None and tuple(a.parents) != tuple(p.sha256 for p in parents):
        return "built on a candidate that was not committed"
    if a.speculative == "retry":
        nxt = next_attempt(spec, concept, past, preferred)
        if isinstance(nxt, Exhausted) or (nxt.method, dict(nxt.hparams)) != (a.method, dict(a.hparams)):
            return "the retry policy chose other settings once the attempts before it were decided"
    return ""


def preferred(spec: CampaignSpec, history: History, step: int, kinds: Mapping[str, str]) -> tuple[Setting, ...]:
    """What committed for earlier concepts of this step's kind, the latest first (orders the search)."""
    if not search.active(spec):
        return ()
    kind = kinds.get(spec.concepts[step - 1], "")
    found = []
    for commit in sorted(history.commits, key=lambda c: -c.step):
        record = next((a for a in history.attempts_for(commit.step) if a.attempt == commit.attempt), None)
        if commit.step < step and record is not None and kinds.get(commit.concept, "") == kind:
            found.append(Setting.of(record.method, record.hparams))
    return tuple(found)


def _seconds(a: AttemptRecord) -> float:
    """An attempt's wall time from its journaled start to its decision (0 when either is missing)."""
    try:
        return (datetime.fromisoformat(a.finished_at) - datetime.fromisoformat(a.started_at)).total_seconds()
    except ValueError:
        return 0.0


def concept_states(spec: CampaignSpec, history: History) -> tuple[ConceptState, ...]:
    """One ConceptState per concept of the spec, in order."""
    states = []
    for step, concept in enumerate(spec.concepts, start=1):
        attempts = tuple(a for a in history.attempts_for(step) if a.status != DISCARDED)
        outcome = history.outcome_for(step)
        if outcome is not None:
            state = outcome.outcome
        elif not attempts:
            state = "pending"
        elif attempts[-1].status == STARTED:
            state = "running"
        else:
            last = attempts[-1]
            state = "accepted" if (last.confirmation or last.decision).committed else "rejected"
        states.append(ConceptState(step, concept, state, len(attempts)))
    return tuple(states)


def step_request(action: RunAttempt, settled: Settled) -> StepRequest:
    """The worker's instructions for a RunAttempt; every path absolute (Ray workers run elsewhere).

    Its hyperparameters are settled here, once: the attempt's (the journal keeps what the campaign and the
    retry policy chose) over the catalog's defaults, so request.json and the delta's header record every
    value that produced the delta, whatever a later version's defaults are."""
    spec = settled.spec
    root = Path(os.path.abspath(spec.storage_path))
    return StepRequest(
        campaign=spec.name, step=action.step, attempt=action.attempt, concept=action.concept,
        method=action.method, hparams=catalog.get(action.method).resolve(dict(action.hparams)), model=spec.model,
        parents=tuple(DeltaRef(str(root / p.path), p.sha256) for p in action.parents),
        out_dir=str(root / attempt_dir(action.step, action.concept, action.attempt)),
        erased_before=action.erased_before, preserve=tuple(spec.preserve),
        validation=with_settled_validation(settled), cache_dir=str(root / "cache"), seed=spec.seed,
        parallel=settled.parallel, concepts_from=settled.concept_set.source if settled.concept_set else "",
        allow_thin=spec.allow_thin, frozen_precision=spec.resources.frozen_precision)


def confirm_request(action: ConfirmAttempt, settled: Settled) -> StepRequest:
    """The attempt's request with the gate's noise drawn from fresh seeds, written under <attempt>/confirm."""
    request = step_request(action.run, settled)
    offset = search.confirm_seed_offset(settled.spec, action.run.attempt)
    return dataclasses.replace(request, out_dir=str(Path(request.out_dir) / "confirm"),
                               validation=dataclasses.replace(request.validation, seed_offset=offset))


def _check_consistent(spec: CampaignSpec, history: History) -> None:
    """Journal records must name the concept the spec has at their step (specs may change on resume)."""
    for record in (*history.commits, *history.outcomes, *history.attempts):
        expected = spec.concepts[record.step - 1] if 1 <= record.step <= len(spec.concepts) else None
        if record.concept != expected:
            raise ManifestError(f"the journal has {record.concept!r} at step {record.step} but the spec has "
                                f"{expected!r}; concepts already worked on cannot be reordered or removed")
