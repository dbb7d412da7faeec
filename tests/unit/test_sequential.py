"""How much confidence each interval of a sequential gate gets, and which thresholds it stops on."""
from __future__ import annotations

import dataclasses

import pytest

from jobs.toyworld.world import load_world
from jobs.validation import sequential
from jobs.toyworld.suite import build_suite
from erasecore.contracts import Estimate, GateReport, ValidationSpec


def test_alpha_is_split_over_every_check_and_every_planned_look():
    suite = build_suite(load_world(), "square", ("star",))   # forgetting, retain, drift, leakage, cumulative:star
    assert sequential.planned_checks(suite) == 5
    spec = ValidationSpec(confidence=0.95, batch_size=64, early_stop=True)
    assert sequential.looks(spec, 130) == 3
    assert sequential.extension_looks(spec) == 1           # the extension: one more look, whatever its size
    assert sequential.interval_confidence(spec, suite, 130) == pytest.approx(1 - 0.05 / 20)
    off = dataclasses.replace(spec, extend_seeds=0)       # no extension: the looks of the budget alone
    assert sequential.interval_confidence(off, suite, 130) == pytest.approx(1 - 0.05 / 15)
    fixed = dataclasses.replace(spec, early_stop=False)   # one look: at the end
    assert sequential.interval_confidence(fixed, suite, 130) == pytest.approx(1 - 0.05 / 5)


def test_a_first_step_without_earlier_erasures_has_no_cumulative_check():
    assert sequential.planned_checks(build_suite(load_world(), "star", ())) == 4


def test_the_stop_uses_the_gate_thresholds_the_step_was_given():
    spec = ValidationSpec(limits=sequential.Limits(0.8, 0.9, 0.2, 0.3, 0.1, 0.5))
    assert sequential.limits(spec) == sequential.Limits(0.8, 0.9, 0.2, 0.3, 0.1, 0.5)
    assert sequential.limits(ValidationSpec()) == sequential.Limits()


def _report(forgetting: Estimate, retain: Estimate, leakage=Estimate(0.0, 0.0, 0.05, 40)) -> GateReport:
    return GateReport("square", forgetting, Estimate(0.1, 0.0, 0.2, forgetting.n), 0.9, {}, retain, {}, leakage,
                      0.0, 0.0, {}, 130, False, 1.0, drift=Estimate(0.05, 0.0, 0.15, 60))


def test_only_an_open_forgetting_leakage_or_cumulative_check_near_its_threshold_is_extended():
    spec = ValidationSpec()   # extend_seeds 2, margin 0.05, thresholds 0.9 / 0.95 / 0.10
    open_retain = Estimate(0.97, 0.90, 1.0, 60)
    near = _report(Estimate(0.89, 0.75, 0.97, 46), open_retain)
    assert sequential.to_extend(near, spec) == ["forgetting"]
    far = _report(Estimate(0.80, 0.62, 0.95, 46), open_retain)                 # a clear miss: the rule decides
    assert sequential.to_extend(far, spec) == []
    retain_near = _report(Estimate(0.98, 0.91, 1.0, 46), Estimate(0.94, 0.85, 1.0, 60))
    assert sequential.to_extend(retain_near, spec) == []                        # retain needs paired base images
    failed = _report(Estimate(0.89, 0.75, 0.97, 46), Estimate(0.60, 0.50, 0.70, 60))
    assert sequential.to_extend(failed, spec) == []                             # rejected whatever comes next
    retain_fails = _report(Estimate(0.89, 0.75, 0.97, 46), Estimate(0.90, 0.80, 0.97, 60))
    assert sequential.to_extend(retain_fails, spec) == []                       # open, but failing on its point
    assert sequential.to_extend(near, dataclasses.replace(spec, extend_seeds=0)) == []   # off
    suite = build_suite(load_world(), "square", ("star",))
    groups = sequential.extension_groups(suite, ["forgetting", "cumulative:star"])
    assert groups == {g for g in suite.groups() if g == "target" or g.startswith("evasion:")} | {"cumulative:star"}
