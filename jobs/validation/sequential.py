"""When a gate's sampling may stop: every check certified, one certified fail, or the budget spent.

The checks and what "certified" means come from orchestrator/core/gate_checks.py, which the gate
uses for its verdict on the same report. Alpha is spent Bonferroni-style over every check and every
planned look (one look per batch), so the chance that any interval the sampling stopped on is wrong
stays within 1 - confidence.
"""
from __future__ import annotations

from orchestrator.core.contracts import GateReport, ValidationSpec
from orchestrator.core.gate_checks import Limits, checks, settled
from jobs.validation import statistics as st
from jobs.validation.suite import Suite


def limits(spec: ValidationSpec) -> Limits:
    """The gate's thresholds as the step got them (copied into its ValidationSpec)."""
    return Limits(spec.stop_forgetting, spec.stop_retain, spec.stop_leakage, spec.stop_drift, spec.stop_cumulative)


def planned_checks(suite: Suite) -> int:
    """forgetting, retain, drift, leakage when the suite has pair prompts, one per earlier erasure."""
    groups = suite.groups()
    return 3 + ("leakage" in groups) + sum(g.startswith("cumulative:") for g in groups)


def looks(spec: ValidationSpec, images: int) -> int:
    """One look per batch when sampling sequentially; one at the end otherwise."""
    return max(1, -(-images // spec.batch_size)) if spec.early_stop else 1


def interval_confidence(spec: ValidationSpec, suite: Suite, images: int) -> float:
    """Each interval's confidence: the gate's confidence spent over its checks and looks."""
    return st.bonferroni(spec.confidence, planned_checks(suite) * looks(spec, images))


def can_stop(report: GateReport, spec: ValidationSpec) -> bool:
    return settled(checks(report, limits(spec)))
