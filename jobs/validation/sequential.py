"""When a gate's sampling may stop: every check certified, one certified fail, or the budget spent.

The checks and what "certified" means come from erasecore/gate_checks.py, which the gate
uses for its verdict on the same report. Alpha is spent Bonferroni-style over every check and every
planned look (one look per batch, the extension's included), so the chance that any interval the
sampling stopped on is wrong stays within 1 - confidence.

The extension: when the budget is spent and a check is still open with its point estimate within
`extend_margin` of its threshold (either side: a coin toss at this sample size) and no other check
fails on its point estimate, the gate draws up to `extend_seeds` more seeds of that check's own
groups, drawn whole and looked at once (one more look in the alpha spending), before its rule
decides. Only checks that need no base image of the same key are extended (forgetting, leakage,
cumulative): the base model's images are drawn for the budget's seeds only, and forgetting compares
extension images with each prompt's base accuracy over those seeds.
"""
from __future__ import annotations

from erasecore.contracts import GateReport, ValidationSpec
from erasecore.gate_checks import CERTIFIED_FAIL, OPEN, Limits, checks, settled
from jobs.validation import statistics as st
from jobs.validation.suite import Suite


def limits(spec: ValidationSpec) -> Limits:
    """The gate's thresholds as the step got them (preflight sets them in its ValidationSpec)."""
    return spec.limits or Limits()


def planned_checks(suite: Suite) -> int:
    """forgetting, retain, drift, leakage when the suite has pair prompts, one per earlier erasure."""
    groups = suite.groups()
    return 3 + ("leakage" in groups) + sum(g.startswith("cumulative:") for g in groups)


EXTENDABLE = ("forgetting", "leakage", "cumulative")   # checks measured without a paired base image


def looks(spec: ValidationSpec, images: int) -> int:
    """One look per batch when sampling sequentially; one at the end otherwise."""
    return max(1, -(-images // spec.batch_size)) if spec.early_stop else 1


def extension_looks(spec: ValidationSpec) -> int:
    """The extension is one more look: all its images are drawn, then the checks are looked at once."""
    return 1 if spec.early_stop and spec.extend_seeds >= 1 else 0


def interval_confidence(spec: ValidationSpec, suite: Suite, images: int) -> float:
    """Each interval's confidence: the gate's confidence spent over its checks and looks."""
    planned = looks(spec, images) + extension_looks(spec)
    return st.bonferroni(spec.confidence, planned_checks(suite) * planned)


def check_kind(group: str) -> str:
    """The check a suite group feeds: target and evasion groups feed forgetting."""
    if group == "target" or group.startswith("evasion:"):
        return "forgetting"
    return group.split(":", 1)[0] if not group.startswith("retain") else "retain"


def to_extend(report: GateReport, spec: ValidationSpec) -> list[str]:
    """The open extendable checks whose point estimate is within extend_margin of the threshold."""
    found = checks(report, limits(spec))
    if spec.extend_seeds < 1 or any(c.status == CERTIFIED_FAIL for c in found):
        return []   # off, or the verdict is reject whatever more images say
    names = [c.name for c in found if c.kind in EXTENDABLE and c.status == OPEN
             and abs(c.estimate.value - c.threshold) <= spec.extend_margin]
    if any(not c.point_passes for c in found if c.name not in names):
        return []   # another check fails on its point estimate: more images here cannot make it a commit
    return names


def extension_groups(suite: Suite, names: list[str]) -> set[str]:
    """The suite groups that feed the named checks (cumulative:<c> feeds its own group only)."""
    return {g for g in suite.groups() if check_kind(g) in names or g in names}


def can_stop(report: GateReport, spec: ValidationSpec) -> bool:
    return settled(checks(report, limits(spec)))
