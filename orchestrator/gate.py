"""The gate: a pure function from a validator's GateReport and the thresholds to commit | reject.

Every check is a proportion with an interval (erasecore/gate_checks.py):

- forgetting (the goal): forgetting >= min_forgetting.
- retain (collateral damage): retain / base retain >= min_retain.
- leakage: share of pair prompts where the target's colour moved <= max_leakage; left out when
  not measured (no pair prompts, or a judge that cannot tell: the report's `unjudged` says why).
- drift: share of retain images whose judged label (object or attributes) differs from the base
  model's on the same prompt and seed <= max_drift. The base model has drift 0 by construction,
  so unlike the KL it replaced (below the base's own seed-to-seed KL for every toy candidate)
  it can fail.
- cumulative:<c> (earlier erasures stay gone): each earlier concept's accuracy <= max_cumulative_acc.

The rule, the same for every check and the same the validator's sequential sampling stops on:
an interval wholly on one side of its threshold (at the report's interval_confidence, spent over
checks and looks) decides that side, both ways. A check still open when the image budget is spent
is decided by its rule in `thresholds.rules`: "point" (its point estimate; noise favours neither
verdict) or "certified" (it fails). A check measured on no samples (n=0) fails. The report's KL
is information only.
"""
from __future__ import annotations

from dataclasses import dataclass

from erasecore.contracts import GateReport
from erasecore.gate_checks import CERTIFIED_FAIL, CERTIFIED_PASS, POINT, Check, Limits, checks
from orchestrator.spec import GateThresholds

COMMIT = "commit"
REJECT = "reject"
ERROR = "error"   # the failed-check name of a step that produced no report


@dataclass(frozen=True)
class GateDecision:
    """commit | reject, with one human-readable line per check (failures first)."""

    verdict: str
    reasons: tuple[str, ...]
    failed: tuple[str, ...] = ()   # names of failed checks: forgetting, retain, leakage, drift, cumulative:<c>, error

    @property
    def committed(self) -> bool:
        return self.verdict == COMMIT


def limits(t: GateThresholds) -> Limits:
    return Limits(t.min_forgetting, t.min_retain, t.max_leakage, t.max_drift, t.max_cumulative_acc, t.max_attack)


def decide(report: GateReport, thresholds: GateThresholds) -> GateDecision:
    """Judge one candidate; commit only if every check passes."""
    judged = [(c, c.passes(thresholds.rules.get(c.kind, POINT))) for c in checks(report, limits(thresholds))]
    texts = [(c, ok, _text(c, ok, thresholds.rules.get(c.kind, POINT), c.name in report.extended))
             for c, ok in judged]
    if not report.leakage.n:
        why = report.unjudged.get("leakage", "")
        texts.append((None, True, f"leakage not judged: {why}" if why else "leakage not measured (n=0)"))
    if thresholds.max_attack is not None and report.attack is None:   # unmeasurable here: not held against it
        texts.append((None, True, f"attack not judged: {report.unjudged.get('attack', 'not measured')}"))
    failed = [(c, text) for c, ok, text in texts if not ok]
    reasons = tuple(text for _, text in failed) + tuple(text for _, ok, text in texts if ok)
    return GateDecision(REJECT if failed else COMMIT, reasons, tuple(c.name for c, _ in failed))


def error_decision(message: str) -> GateDecision:
    """The decision recorded for a step that raised instead of producing a report."""
    return GateDecision(REJECT, (f"step failed: {message}",), (ERROR,))


def _text(c: Check, ok: bool, rule: str, extended: bool = False) -> str:
    """e.g. "retain 0.89 < 0.95 (0.84-0.93 certified)" or "drift 0.12 <= 0.25 (0.05-0.31 open: point)";
    ", extended" when the gate drew more images for it after its budget."""
    label = c.name.replace(":", " ")
    e = c.estimate
    if e.n == 0:
        return f"{label} not measured (n=0)"
    point = c.point_passes
    op = (">=" if point else "<") if c.at_least else ("<=" if point else ">")
    how = "certified" if c.status in (CERTIFIED_PASS, CERTIFIED_FAIL) else f"open: {rule}"
    if point and not ok:
        how = "open: not certified"
    how += ", extended" if extended else ""
    return f"{label} {e.value:.2f} {op} {c.threshold:.2f} ({e.lower:.2f}-{e.upper:.2f} {how})"
