"""Retry and escalation: what a concept's next attempt is, given the attempts it already had.

The rule (pure, no I/O):
- Attempt 1 runs `spec.method` with `spec.hparams[method]`.
- A rejected attempt is retried with the same method and its strength knob (the catalog entry's
  `strength`) changed by `retry.strength_step`, starting from the attempt's value or its default:
  multiplied when forgetting failed (under-erased), divided when only collateral checks
  failed (over-erased: retain, leakage, kl, cumulative). A step that errored is retried unchanged.
- After ATTEMPTS_PER_METHOD rejected attempts of one method, escalate to the next method of
  `method_sequence(spec)` (`method` then `ladder`), from that method's own spec.hparams.
- `retry.max_attempts` is the budget per concept across the whole ladder. When it is spent,
  or the ladder has no method left, the concept is Exhausted: `retry.on_exhausted`
  ("skip" the concept, or "halt" the campaign).
A campaign with a `search:` section tries its candidates instead of the strength retries and the ladder
(orchestrator/search.py), within the search's budget; Exhausted is the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from erasecore import catalog
from orchestrator import search
from orchestrator.gate import ERROR, GateDecision
from orchestrator.search import Setting
from orchestrator.spec import CampaignSpec

ATTEMPTS_PER_METHOD = 2


@dataclass(frozen=True)
class PastAttempt:
    """A finished attempt of one concept as the policy sees it."""

    method: str
    hparams: Mapping[str, Any]
    decision: GateDecision
    seconds: float = 0.0               # wall time from its start to its decision (the search's budget)


@dataclass(frozen=True)
class NextAttempt:
    method: str
    hparams: dict[str, Any]


@dataclass(frozen=True)
class Exhausted:
    """No attempt left: `outcome` is retry.on_exhausted ("skip" | "halt")."""

    outcome: str
    reason: str


def method_sequence(spec: CampaignSpec) -> tuple[str, ...]:
    """`method` then the ladder, each method once (a ladder that repeats `method` is not an error)."""
    return tuple(dict.fromkeys([spec.method, *spec.ladder]))


def first_hparams(spec: CampaignSpec, method: str) -> dict[str, Any]:
    """The hyperparameters a method starts from: the spec's overrides for it, else none."""
    return dict(spec.hparams.get(method, {}))


def next_attempt(spec: CampaignSpec, concept: str, past: Sequence[PastAttempt],
                 preferred: Sequence[Setting] = ()) -> NextAttempt | Exhausted:
    """The next (method, hparams) for `concept` after the rejected attempts `past`, or Exhausted.
    `preferred`: the search's settings that committed for earlier concepts of this kind, latest first."""
    if search.active(spec):
        return _searched(spec, concept, past, preferred)
    if any(p.decision.committed for p in past):
        raise ValueError(f"{concept!r} already has a committed attempt; nothing to retry")
    sequence = method_sequence(spec)
    if not past:
        return NextAttempt(sequence[0], first_hparams(spec, sequence[0]))
    if len(past) >= spec.retry.max_attempts:
        return _exhausted(spec, f"{concept!r}: all {spec.retry.max_attempts} attempts rejected")
    last = past[-1]
    if last.method in sequence and _run_length(past) < ATTEMPTS_PER_METHOD:
        return NextAttempt(last.method, _adjusted(last, spec.retry.strength_step))
    later = _later_methods(sequence, past)
    if not later:
        return _exhausted(spec, f"{concept!r}: rejected by every method ({', '.join(sequence)})")
    return NextAttempt(later[0], first_hparams(spec, later[0]))


def _searched(spec: CampaignSpec, concept: str, past: Sequence[PastAttempt],
              preferred: Sequence[Setting]) -> NextAttempt | Exhausted:
    """The first candidate of the search's plan not tried yet, within its budget."""
    s = spec.search
    if s.max_attempts and len(past) >= s.max_attempts:
        return _exhausted(spec, f"{concept!r}: all {s.max_attempts} attempts of the search rejected")
    spent = sum(p.seconds for p in past)
    if s.max_seconds and spent >= s.max_seconds:
        return _exhausted(spec, f"{concept!r}: the search's {s.max_seconds:g} s spent ({spent:.0f} s, "
                                f"{len(past)} attempts rejected)")
    tried = {Setting.of(p.method, p.hparams) for p in past}
    left = [c for c in search.plan(spec, preferred, concept) if c not in tried]
    if not left:
        return _exhausted(spec, f"{concept!r}: every candidate of the search rejected ({len(past)} attempts)")
    return NextAttempt(left[0].method, left[0].overrides())


def _exhausted(spec: CampaignSpec, reason: str) -> Exhausted:
    return Exhausted(spec.retry.on_exhausted, reason)


def _run_length(past: Sequence[PastAttempt]) -> int:
    """How many attempts at the end of `past` used the last attempt's method."""
    n = 0
    for p in reversed(past):
        if p.method != past[-1].method:
            break
        n += 1
    return n


def _later_methods(sequence: tuple[str, ...], past: Sequence[PastAttempt]) -> list[str]:
    last = past[-1].method
    if last in sequence:
        return list(sequence[sequence.index(last) + 1:])
    tried = {p.method for p in past}   # the spec changed under a resumed campaign
    return [m for m in sequence if m not in tried]


def _adjusted(last: PastAttempt, step: float) -> dict[str, Any]:
    """last.hparams with the strength knob moved in the direction the gate asks for."""
    hparams = dict(last.hparams)
    if ERROR in last.decision.failed:
        return hparams   # the step broke; its settings were not judged
    entry = catalog.get(last.method)
    key = entry.strength
    current = hparams.get(key, entry.resolve(hparams)[key])   # the default of the variant the attempt ran
    under_erased = "forgetting" in last.decision.failed or not last.decision.failed
    hparams[key] = search.strength(entry, current * step if under_erased else current / step)
    return hparams
