"""How long a campaign still needs: a range, from the running phase's progress rate and the measured
history of earlier phases, with the retry ladder counted. Pure: every input is passed in.

    eta = estimate(spec, history, measured, inflight)
    eta.text()     # "3m10s to 11m40s": 3m10s if every attempt from now on passes, 11m40s if every retry is used

- The running phase: its progress records' rate (optimizer steps/s of a fine-tune, images/s of a
  validation: what is left of its stage, and for a validation still drawing its baseline, the
  candidate's images too), else the mean of the same method's earlier phases minus the time it has run.
- Phases still to come: the mean measured seconds of that method's erase phases (earlier attempts of
  this campaign), of the validation phases (any method: they draw the same suite), and of the time
  an attempt spends outside its phases (scheduling, the gate, the journal).
- The ladder: `low` assumes the running attempt and every concept's next attempt pass; `high`
  assumes every attempt is rejected until the retry policy (orchestrator/policy.py, asked with
  assumed rejections) has no attempt left, so it counts the escalation to slower methods.
- A part with no measurement yet (no ESD-x phase has finished when the campaign starts with UCE)
  makes that end a lower bound, shown with a trailing "+" ("4m30s+": at least that); "?" only while
  nothing at all has been measured (the first phase of the campaign, before its first progress record).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from erasecore.phase_progress import ProgressRecord, current_run
from orchestrator.gate import GateDecision
from orchestrator.manifest import FINISHED, STARTED, AttemptRecord, History
from orchestrator.policy import Exhausted, PastAttempt, next_attempt
from orchestrator.spec import CampaignSpec

ASSUMED_REJECT = GateDecision("reject", ("assumed rejected (worst case)",), ("forgetting",))


@dataclass(frozen=True)
class PhaseTime:
    """A finished phase of an earlier attempt (placement.json)."""

    step: int
    attempt: int
    method: str
    phase: str          # erase | validate
    seconds: float


@dataclass(frozen=True)
class InFlight:
    """The attempt running now, as the driver sees it."""

    step: int
    attempt: int
    method: str
    phase: str | None                          # erase | validate | None (between its phases)
    phase_elapsed: float = 0.0                 # seconds since the phase began
    records: tuple[ProgressRecord, ...] = ()   # the phase's progress records so far (its current run)


@dataclass(frozen=True)
class Eta:
    low: float | None           # seconds if every attempt from now on passes
    high: float | None          # seconds if every remaining retry of the ladder is used
    low_partial: bool = False   # some part was unmeasured: low is a lower bound
    high_partial: bool = False
    phase_left: float | None = None   # the running phase alone

    def text(self) -> str:
        """'3m10s', '3m10s to 11m40s', '40s+ to 2m10s+' (+: at least; '?' only when nothing at all is known)."""
        low, high = _bound(self.low, self.low_partial), _bound(self.high, self.high_partial)
        if low == high:
            return low
        return f"{low} to {high}"


def duration(seconds: float | None) -> str:
    """12s, 3m05s, 1h02m; '?' when unknown."""
    if seconds is None:
        return "?"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _bound(seconds: float | None, partial: bool) -> str:
    if seconds is None or (partial and seconds < 0.5):
        return "?"   # nothing measured yet
    return f"{duration(seconds)}+" if partial else duration(seconds)


def from_records(step: int, attempt: int, method: str, records: Sequence[ProgressRecord], now: float,
                 attempt_started: float) -> tuple[InFlight, list[PhaseTime]]:
    """The attempt in flight as its progress records (both phases, in file order) show it at `now`: its phase,
    how long that phase has run, its records; and its erase phase as a measurement once that has ended.
    Records written after `now` are ignored, so a recorded campaign can be replayed."""
    seen = [r for r in records if r.t <= now]
    erase = current_run([r for r in seen if r.phase == "erase"])
    validate = current_run([r for r in seen if r.phase == "validate"])
    if erase and validate and validate[0].t < erase[0].t:
        validate = []   # an earlier run's validation (the attempt is being redone)
    ended = bool(erase) and erase[-1].stage == "end"
    done = [PhaseTime(step, attempt, method, "erase", erase[-1].t - erase[0].t)] \
        if ended and erase[-1].ok and erase[0].stage == "start" else []
    if validate:
        if validate[-1].stage == "end":
            return InFlight(step, attempt, method, None, 0.0, tuple(validate)), done
        return InFlight(step, attempt, method, "validate", now - validate[0].t, tuple(validate)), done
    if ended:   # the validation is queued
        return InFlight(step, attempt, method, "validate", now - erase[-1].t), done
    if erase:
        return InFlight(step, attempt, method, "erase", now - erase[0].t, tuple(erase)), done
    return InFlight(step, attempt, method, "erase", max(0.0, now - attempt_started)), done


class Durations:
    """Mean measured seconds per (method, phase), of any validation, and of an attempt's time outside its phases."""

    def __init__(self, history: History, measured: Sequence[PhaseTime]):
        by: dict[tuple[str, str], list[float]] = {}
        for p in measured:
            by.setdefault((p.method, p.phase), []).append(p.seconds)
        self._mean = {k: sum(v) / len(v) for k, v in by.items()}
        validations = [p.seconds for p in measured if p.phase == "validate"]
        self.validate = sum(validations) / len(validations) if validations else None
        self.overhead = _overhead(history, measured)

    def phase(self, method: str, phase: str) -> float | None:
        if phase == "validate":
            return self._mean.get((method, phase), self.validate)
        return self._mean.get((method, phase))

    def attempt(self, method: str) -> tuple[float, bool]:
        """(seconds, partial) of a whole attempt of `method`; partial when a phase was never measured."""
        parts = [self.phase(method, "erase"), self.validate]
        known = [p for p in parts if p is not None]
        return sum(known) + self.overhead, len(known) < len(parts)


def _overhead(history: History, measured: Sequence[PhaseTime]) -> float:
    """Mean seconds a finished attempt spent outside its measured phases (journal times, 1 s resolution)."""
    phases: dict[tuple[int, int], float] = {}
    for p in measured:
        phases[(p.step, p.attempt)] = phases.get((p.step, p.attempt), 0.0) + p.seconds
    gaps = []
    for a in history.attempts:
        if a.status == FINISHED and a.finished_at and (a.step, a.attempt) in phases:
            wall = (_time(a.finished_at) - _time(a.started_at)).total_seconds()
            gaps.append(max(0.0, wall - phases[(a.step, a.attempt)]))
    return sum(gaps) / len(gaps) if gaps else 0.0


def phase_left(inflight: InFlight, durations: Durations) -> float | None:
    """Seconds the running phase still needs, from its progress rate and the history of its kind.

    With share f of the phase done, the rate's estimate (what is left at the pace so far) is weighted f
    and the history's ((1 - f) x the mean measured seconds of such phases) 1 - f: early on, a phase's
    pace is noisy and the history is the better guide; near its end the pace is. Either alone when the
    other is missing; None when both are."""
    if inflight.phase is None:
        return 0.0
    latest = inflight.records[-1] if inflight.records else None
    if latest is not None and latest.stage == "end":
        return 0.0
    mean = durations.phase(inflight.method, inflight.phase)
    counted = _latest_counted(inflight.records)
    if counted is None or not counted.of:
        return None if mean is None else max(0.0, mean - inflight.phase_elapsed)
    left, whole = max(0, counted.of - (counted.done or 0)), counted.of
    if inflight.phase == "validate" and any(r.stage == "baseline" for r in inflight.records):
        whole = 2 * counted.of               # the baseline, then the candidate on the same keys
        if counted.stage == "baseline":
            left += counted.of
    by_rate = left / counted.rate
    if mean is None:
        return by_rate
    done = 1.0 - left / whole
    return done * by_rate + (1.0 - done) * (1.0 - done) * mean


def _latest_counted(records: Sequence[ProgressRecord]) -> ProgressRecord | None:
    """The last record that counts work (train steps or images) at a measured rate. A validation's "grid"
    and a stage's first record (0 done, no rate yet) are passed over: after the baseline, its rate and
    total stand for the candidate that follows."""
    return next((r for r in reversed(records) if r.stage in ("train", "baseline", "candidate") and r.rate), None)


def estimate(spec: CampaignSpec, history: History, measured: Sequence[PhaseTime],
             inflight: InFlight | None = None) -> Eta:
    """The campaign's remaining seconds as a range (see the module docstring)."""
    d = Durations(history, measured)
    low = high = 0.0
    low_partial = high_partial = False
    left = None
    if inflight is not None:
        left = phase_left(inflight, d)
        if left is not None and inflight.phase and d.phase(inflight.method, inflight.phase) is None:
            # The first phase of its kind: its own pace (time so far + what its rate says is left) stands
            # for the phases of that kind still to come, until one has finished.
            d = Durations(history, [*measured, PhaseTime(inflight.step, inflight.attempt, inflight.method,
                                                         inflight.phase, inflight.phase_elapsed + left)])
        parts = [left, d.validate] if inflight.phase == "erase" else [left]
        known = [p for p in parts if p is not None]
        low = high = sum(known) + d.overhead
        low_partial = high_partial = len(known) < len(parts)
    for step, concept in enumerate(spec.concepts, start=1):
        if history.outcome_for(step) is not None:
            continue
        attempts = history.attempts_for(step)
        last = attempts[-1] if attempts else None
        running_here = inflight is not None and inflight.step == step
        if not running_here and last is not None and last.decision is not None and last.decision.committed:
            continue   # accepted: its commit is the next thing the driver journals
        # The attempt under way (running now, or interrupted and redone first with its own settings).
        current = (inflight.method, inflight.attempt) if running_here else \
            (last.method, last.attempt) if last is not None and last.status == STARTED else None
        rest = _ladder(spec, concept, _past(attempts, current))
        queue = rest if current is None or running_here else [current[0], *rest]
        if not running_here and queue:
            seconds, partial = d.attempt(queue[0])
            low, low_partial = low + seconds, low_partial or partial
        for method in queue:
            seconds, partial = d.attempt(method)
            high, high_partial = high + seconds, high_partial or partial
    return Eta(low, high, low_partial, high_partial, left)


def _past(attempts: Sequence[AttemptRecord], current: tuple[str, int] | None) -> list[PastAttempt]:
    """A step's judged attempts, plus the one under way as if it were rejected (what `high` assumes)."""
    past = [PastAttempt(a.method, a.hparams, a.decision) for a in attempts
            if a.status == FINISHED and a.decision is not None]
    if current is not None:
        record = next((a for a in attempts if a.attempt == current[1]), None)
        past.append(PastAttempt(current[0], record.hparams if record else {}, ASSUMED_REJECT))
    return past


def _ladder(spec: CampaignSpec, concept: str, past: list[PastAttempt]) -> list[str]:
    """Methods of the attempts the policy would still run for `concept` if every one were rejected."""
    past = list(past)
    methods: list[str] = []
    if any(p.decision.committed for p in past):
        return methods
    while len(methods) <= spec.retry.max_attempts:
        nxt = next_attempt(spec, concept, past)
        if isinstance(nxt, Exhausted):
            break
        methods.append(nxt.method)
        past.append(PastAttempt(nxt.method, nxt.hparams, ASSUMED_REJECT))
    return methods


def _time(iso: str) -> datetime:
    return datetime.fromisoformat(iso)
