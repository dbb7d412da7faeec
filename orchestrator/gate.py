"""The gate: a pure function from a validator's GateReport and the thresholds to commit | reject.

The rule, per check (use_bounds=False compares every point estimate):

- forgetting (the goal): forgetting.value >= min_forgetting. Always the point estimate:
  a conservative Wilson bound would demand perfection at the small n a step measures
  (n=48 needs 48/48 to put the lower bound above 0.9).
- cumulative (earlier erasures stay gone): each earlier concept's value <= max_cumulative_acc.
  Also the point estimate, for the same reason.
- retain and leakage (collateral damage): with use_bounds, a candidate is rejected only when
  the Wilson interval lies entirely on the wrong side (retain.upper < min_retain,
  leakage.lower > max_leakage). Small samples are noisy, and rejecting an erasure that reached
  its goal because of noise burns an attempt.
- kl: with use_bounds, the excess over the base model's own seed-to-seed KL,
  max(0, kl - kl_base_noise) <= max_kl; otherwise the raw kl.

A proportion measured on no samples (n=0) fails, except leakage: not every concept has
pair prompts, and not every judge can tell where an attribute landed (the report's `unjudged`
says why, and the reason is the check's text); an unmeasured collateral check cannot be held
against a candidate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from orchestrator.core.contracts import Estimate, GateReport
from orchestrator.spec import GateThresholds

COMMIT = "commit"
REJECT = "reject"
ERROR = "error"   # the failed-check name of a step that produced no report


@dataclass(frozen=True)
class GateDecision:
    """commit | reject, with one human-readable line per check (failures first)."""

    verdict: str
    reasons: tuple[str, ...]
    failed: tuple[str, ...] = ()   # names of failed checks: forgetting, retain, leakage, kl, cumulative:<c>, error

    @property
    def committed(self) -> bool:
        return self.verdict == COMMIT


@dataclass(frozen=True)
class _Check:
    name: str
    ok: bool
    text: str


def decide(report: GateReport, thresholds: GateThresholds) -> GateDecision:
    """Judge one candidate; commit only if every check passes."""
    t = thresholds
    checks = [_at_least("forgetting", report.forgetting, t.min_forgetting, bound=False),
              _at_least("retain", report.retain, t.min_retain, bound=t.use_bounds),
              _leakage(report.leakage, t.max_leakage, bound=t.use_bounds, why=report.unjudged.get("leakage", "")),
              _kl(report.kl, report.kl_base_noise, t.max_kl, calibrated=t.use_bounds)]
    checks += [_at_most(f"cumulative:{c}", f"cumulative {c}", e, t.max_cumulative_acc)
               for c, e in sorted(report.cumulative.items())]
    failed = [c for c in checks if not c.ok]
    reasons = tuple(c.text for c in failed) + tuple(c.text for c in checks if c.ok)
    return GateDecision(REJECT if failed else COMMIT, reasons, tuple(c.name for c in failed))


def error_decision(message: str) -> GateDecision:
    """The decision recorded for a step that raised instead of producing a report."""
    return GateDecision(REJECT, (f"step failed: {message}",), (ERROR,))


def _at_least(name: str, e: Estimate, minimum: float, bound: bool) -> _Check:
    if e.n == 0:
        return _Check(name, False, f"{name} not measured (n=0)")
    if bound:
        ok = e.upper >= minimum
        return _Check(name, ok, f"{name} {e.value:.2f} (upper {e.upper:.2f}) {'>=' if ok else '<'} {minimum:.2f}")
    ok = e.value >= minimum
    return _Check(name, ok, f"{name} {e.value:.2f} {'>=' if ok else '<'} {minimum:.2f}")


def _at_most(name: str, label: str, e: Estimate, maximum: float) -> _Check:
    if e.n == 0:
        return _Check(name, False, f"{label} not measured (n=0)")
    ok = e.value <= maximum
    return _Check(name, ok, f"{label} {e.value:.2f} {'<=' if ok else '>'} {maximum:.2f}")


def _leakage(e: Estimate, maximum: float, bound: bool, why: str = "") -> _Check:
    if e.n == 0:
        return _Check("leakage", True, f"leakage not judged: {why}" if why else "leakage not measured (n=0)")
    if not bound:
        return _at_most("leakage", "leakage", e, maximum)
    ok = e.lower <= maximum
    return _Check("leakage", ok, f"leakage {e.value:.2f} (lower {e.lower:.2f}) {'<=' if ok else '>'} {maximum:.2f}")


def _kl(kl: float, noise: float, maximum: float, calibrated: bool) -> _Check:
    if math.isnan(kl):
        return _Check("kl", False, "kl is NaN")
    if calibrated:
        noise = noise if math.isfinite(noise) else 0.0   # an unknown floor must not excuse anything
        excess = max(0.0, kl - noise)
        ok = excess <= maximum
        return _Check("kl", ok, f"kl {kl:.3f} - noise {noise:.3f} = {excess:.3f} {'<=' if ok else '>'} {maximum:.3f}")
    ok = kl <= maximum
    return _Check("kl", ok, f"kl {kl:.3f} {'<=' if ok else '>'} {maximum:.3f}")
