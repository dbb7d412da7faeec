"""How much confidence each interval of a sequential gate gets, and which thresholds it stops on."""
from __future__ import annotations

import dataclasses

import pytest

from jobs.toyworld.world import load_world
from jobs.validation import sequential
from jobs.validation.suite import build_suite
from orchestrator.core.contracts import ValidationSpec


def test_alpha_is_split_over_every_check_and_every_planned_look():
    suite = build_suite(load_world(), "square", ("star",))   # forgetting, retain, drift, leakage, cumulative:star
    assert sequential.planned_checks(suite) == 5
    spec = ValidationSpec(confidence=0.95, batch_size=64, early_stop=True)
    assert sequential.looks(spec, 130) == 3
    assert sequential.interval_confidence(spec, suite, 130) == pytest.approx(1 - 0.05 / 15)
    fixed = dataclasses.replace(spec, early_stop=False)   # one look: at the end
    assert sequential.interval_confidence(fixed, suite, 130) == pytest.approx(1 - 0.05 / 5)


def test_a_first_step_without_earlier_erasures_has_no_cumulative_check():
    assert sequential.planned_checks(build_suite(load_world(), "star", ())) == 4


def test_the_stop_uses_the_gate_thresholds_the_step_was_given():
    spec = ValidationSpec(stop_forgetting=0.8, stop_retain=0.9, stop_leakage=0.2, stop_drift=0.3, stop_cumulative=0.1)
    assert sequential.limits(spec) == sequential.Limits(0.8, 0.9, 0.2, 0.3, 0.1)
