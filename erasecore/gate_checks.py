"""The gate's checks as intervals against thresholds: shared by the validator's stop and the gate's verdict.

A check is one Estimate, one threshold and a direction (at least / at most). Its interval is
*certified* when it lies wholly on one side of the threshold: certified pass or certified fail;
otherwise it is open. The validator samples in batches until every check is certified pass, or
any is certified fail, or the budget is spent (`settled`); the gate then applies each check's rule
to the same report (`passes`). Both read the same list, built here, so they cannot disagree on
which checks exist or what their thresholds mean.
"""
from __future__ import annotations

from dataclasses import dataclass

from erasecore.contracts import Estimate, GateReport, Limits

__all__ = ["Limits", "Check", "checks", "settled"]

CERTIFIED_PASS = "certified pass"
CERTIFIED_FAIL = "certified fail"
OPEN = "open"

# What an open check (the budget spent before its interval left the threshold) means, per check:
POINT = "point"            # its point estimate decides (symmetric: noise favours neither verdict)
CERTIFIED = "certified"    # it fails: a pass must be certified
RULES = (POINT, CERTIFIED)
CHECK_KINDS = ("forgetting", "retain", "leakage", "drift", "cumulative", "attack")


@dataclass(frozen=True)
class Check:
    name: str                 # forgetting, retain, leakage, drift, cumulative:<concept>
    estimate: Estimate
    threshold: float
    at_least: bool            # True: value >= threshold passes; False: value <= threshold passes

    @property
    def kind(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def status(self) -> str:
        e, t = self.estimate, self.threshold
        if e.n == 0:
            return OPEN
        low, high = (e.lower, e.upper) if self.at_least else (-e.upper, -e.lower)
        t = t if self.at_least else -t
        if low >= t:
            return CERTIFIED_PASS
        return CERTIFIED_FAIL if high < t else OPEN

    @property
    def point_passes(self) -> bool:
        v = self.estimate.value
        return v >= self.threshold if self.at_least else v <= self.threshold

    def passes(self, rule: str) -> bool:
        """The verdict on this check: certified either way, else its rule (n=0 never passes)."""
        if self.estimate.n == 0:
            return False
        status = self.status
        if status != OPEN:
            return status == CERTIFIED_PASS
        return rule == POINT and self.point_passes


def checks(report: GateReport, limits: Limits) -> list[Check]:
    """Every check the report supports. Leakage is left out when its group was not measured (no pair
    prompts, or a judge that cannot tell where an attribute landed): it cannot be held against anyone."""
    out = [Check("forgetting", report.forgetting, limits.min_forgetting, True),
           Check("retain", report.retain, limits.min_retain, True)]
    if report.leakage.n:
        out.append(Check("leakage", report.leakage, limits.max_leakage, False))
    out.append(Check("drift", report.drift, limits.max_drift, False))
    out += [Check(f"cumulative:{c}", e, limits.max_cumulative_acc, False) for c, e in sorted(report.cumulative.items())]
    if limits.max_attack is not None and report.attack is not None:   # measured after sampling: the gate's only
        out.append(Check("attack", report.attack, limits.max_attack, False))
    return out


def settled(found: list[Check]) -> bool:
    """Sampling can stop: one check is certified fail (the verdict is reject whatever follows), or all pass."""
    states = [c.status for c in found]
    return CERTIFIED_FAIL in states or all(s == CERTIFIED_PASS for s in states)
