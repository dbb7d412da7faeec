"""The judge self-check's verdict: can the campaign's judge see each concept on the base model's own images?

Per concept, two rates of the judge on the base model's images, each with its Wilson interval at the gate's
confidence (validation.confidence):

- hit rate: how often it sees the concept on the concept's own prompts (the gate's target and evasion
  prompts: what a gate's forgetting is measured against, its base target accuracy);
- false-positive rate: how often it sees the concept on other concepts' prompts (the gate's retain prompts,
  asked about this concept instead of their own).

A gate cannot measure the forgetting of a concept the base model barely draws (the hit rate's lower bound
under MIN_HIT) nor of one the judge cannot tell apart from the others (the hit rate's lower bound not above
the false-positive rate's upper bound): such a concept is refused, or, with validation.allow_weak_judge,
flagged and run. Pure: the images and the judging are jobs/validation/judge_check.py's.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from erasecore.contracts import Estimate, JudgeIdentity
from erasecore.errors import JudgeCheckError

MIN_HIT = 0.5   # below this the base model draws the concept in fewer than half its prompts: little to erase
OK, FLAGGED, REFUSED = "ok", "flagged", "refused"


@dataclass(frozen=True)
class JudgeRates:
    """What the judge saw of one concept on the base model's images."""

    concept: str
    hit: Estimate              # the concept seen on its own prompts
    false_positive: Estimate   # the concept seen on other concepts' prompts


@dataclass(frozen=True)
class ConceptVerdict:
    rates: JudgeRates
    verdict: str               # ok | flagged (weak, allowed) | refused
    reason: str = ""           # why the judge is weak on it; "" when ok


@dataclass(frozen=True)
class JudgeCheck:
    """The self-check of one campaign's judge over its concepts."""

    judge: JudgeIdentity
    model: str
    seeds: int                 # images per prompt
    confidence: float          # of every interval
    concepts: tuple[ConceptVerdict, ...]

    @property
    def refused(self) -> tuple[ConceptVerdict, ...]:
        return tuple(c for c in self.concepts if c.verdict == REFUSED)


def weakness(rates: JudgeRates) -> str:
    """Why a gate cannot trust the judge on this concept; "" when it can."""
    h, f = rates.hit, rates.false_positive
    if h.n == 0 or f.n == 0:
        return f"the suite has no prompts {'of the concept' if h.n == 0 else 'of other concepts'} to draw"
    if h.lower < MIN_HIT:
        return f"the base model barely draws it (hit rate's lower bound {h.lower:.2f} < {MIN_HIT})"
    if h.lower <= f.upper:
        return (f"the judge cannot tell it apart (hit rate's lower bound {h.lower:.2f} <= the false-positive "
                f"rate's upper bound {f.upper:.2f})")
    return ""


def verdict(rates: JudgeRates, allow_weak: bool) -> ConceptVerdict:
    """ok, else refused, or flagged when the campaign allows a weak judge (validation.allow_weak_judge)."""
    why = weakness(rates)
    if not why:
        return ConceptVerdict(rates, OK)
    return ConceptVerdict(rates, FLAGGED if allow_weak else REFUSED, why)


def reverdict(check: JudgeCheck, allow_weak: bool) -> JudgeCheck:
    """A journaled check judged again under the campaign's allow_weak_judge (it may change on resume; the
    rates do not)."""
    return replace(check, concepts=tuple(verdict(c.rates, allow_weak) for c in check.concepts))


def refusal(check: JudgeCheck) -> str:
    """One line naming every refused concept and why; "" when none is."""
    refused = check.refused
    if not refused:
        return ""
    parts = "; ".join(f"{c.rates.concept!r}: {c.reason}, hit rate {_est(c.rates.hit)}, false positives "
                      f"{_est(c.rates.false_positive)}" for c in refused)
    return (f"judge-check: the {check.judge.name} judge cannot measure {len(refused)} concept(s) on {check.model}'s "
            f"own images: {parts} (set validation.allow_weak_judge: true to run them anyway, flagged)")


def require(check: JudgeCheck) -> JudgeCheck:
    """The check when no concept is refused; else one JudgeCheckError line (exit 2 in the CLI)."""
    message = refusal(check)
    if message:
        raise JudgeCheckError(message)
    return check


def table(check: JudgeCheck) -> str:
    """The per-concept table `erase judge-check` prints."""
    head = ("concept", "hit rate (own prompts)", "false positives (other prompts)", "verdict")
    rows = [(c.rates.concept, _est(c.rates.hit), _est(c.rates.false_positive),
             c.verdict + (f": {c.reason}" if c.reason else "")) for c in check.concepts]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths)) + "  " + r[3] for r in (head, *rows)]
    return "\n".join([_title(check), *lines])


def _title(check: JudgeCheck) -> str:
    j = check.judge
    weights = ", ".join(f"{name} sha256 {digest[:12]}" for name, digest in j.weights.items()) or "no weight files"
    return (f"judge {j.name} ({weights}) on {check.model}'s images, {check.seeds} per prompt; "
            f"point [{check.confidence:.0%} Wilson interval] n = images")


def _est(e: Estimate) -> str:
    return f"{e.value:.2f} [{e.lower:.2f}, {e.upper:.2f}] n={e.n}"
