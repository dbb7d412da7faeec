"""Retry and escalation policy: stronger on weak forgetting, weaker on collateral damage, ladder, budget."""
from __future__ import annotations

from pathlib import Path

import pytest

from erasecore import catalog
from orchestrator.gate import COMMIT, GateDecision, error_decision
from orchestrator.policy import (ATTEMPTS_PER_METHOD, Exhausted, NextAttempt,
                                 PastAttempt, method_sequence, next_attempt)
from orchestrator.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
WEAK = GateDecision("reject", ("forgetting 0.62 < 0.90",), ("forgetting",))
HARMFUL = GateDecision("reject", ("retain 0.80 (upper 0.85) < 0.95",), ("retain",))


def spec(*overrides: str):
    return load_spec(None, ["name=t", "concepts=[star]", *overrides])


def test_first_attempt_uses_method_and_its_overrides():
    s = spec("hparams.uce.lam=0.1")
    assert next_attempt(s, "star", []) == NextAttempt("uce", {"lam": 0.1})
    assert next_attempt(spec(), "star", []) == NextAttempt("uce", {})


def test_weak_forgetting_retries_same_method_stronger_from_the_default():
    nxt = next_attempt(spec(), "star", [PastAttempt("uce", {}, WEAK)])
    assert nxt == NextAttempt("uce", {"erase_scale": 2.0})


def test_strength_steps_from_the_previous_value():
    s = spec("method=esd-x", "retry.strength_step=1.5", "retry.max_attempts=5")
    nxt = next_attempt(s, "star", [PastAttempt("esd-x", {"eta": 2.0, "steps": 100}, WEAK)])
    assert nxt == NextAttempt("esd-x", {"eta": 3.0, "steps": 100})


def test_collateral_damage_retries_weaker():
    nxt = next_attempt(spec(), "star", [PastAttempt("uce", {"erase_scale": 2.0}, HARMFUL)])
    assert nxt == NextAttempt("uce", {"erase_scale": 1.0})


def test_integer_knobs_stay_integers():
    s = spec("method=fmn", "ladder=[]")
    assert next_attempt(s, "star", [PastAttempt("fmn", {}, WEAK)]) == NextAttempt("fmn", {"steps": 70})
    nxt = next_attempt(s, "star", [PastAttempt("fmn", {"steps": 3}, HARMFUL)])
    assert nxt.hparams["steps"] == 2 and isinstance(nxt.hparams["steps"], int)


def test_a_failed_step_is_retried_unchanged():
    nxt = next_attempt(spec(), "star", [PastAttempt("uce", {"erase_scale": 2.0}, error_decision("OOM"))])
    assert nxt == NextAttempt("uce", {"erase_scale": 2.0})


def test_escalates_after_two_rejections_of_one_method():
    s = spec("hparams.esd-x.steps=50", "retry.max_attempts=5")
    past = [PastAttempt("uce", {}, WEAK), PastAttempt("uce", {"erase_scale": 2.0}, WEAK)]
    assert ATTEMPTS_PER_METHOD == 2
    assert next_attempt(s, "star", past) == NextAttempt("esd-x", {"steps": 50})   # fresh from spec.hparams
    past += [PastAttempt("esd-x", {"steps": 50}, WEAK), PastAttempt("esd-x", {"steps": 50, "eta": 2.0}, WEAK)]
    assert next_attempt(s, "star", past) == NextAttempt("esd-u", {})


def test_budget_is_per_concept_across_the_ladder():
    past = [PastAttempt("uce", {}, WEAK), PastAttempt("uce", {"erase_scale": 2.0}, WEAK),
            PastAttempt("esd-x", {}, WEAK)]
    skip = next_attempt(spec(), "star", past)   # default max_attempts=3
    assert skip == Exhausted("skip", "'star': all 3 attempts rejected")
    assert next_attempt(spec("retry.on_exhausted=halt"), "star", past).outcome == "halt"


def test_ladder_runs_out_before_the_budget():
    s = spec("ladder=[]", "retry.max_attempts=10")
    past = [PastAttempt("uce", {}, WEAK), PastAttempt("uce", {"erase_scale": 2.0}, WEAK)]
    out = next_attempt(s, "star", past)
    assert isinstance(out, Exhausted) and out.outcome == "skip" and "every method" in out.reason


def test_method_sequence_drops_repeats():
    assert method_sequence(spec("method=esd-x")) == ("esd-x", "esd-u")   # default ladder repeats esd-x
    assert method_sequence(spec()) == ("uce", "esd-x", "esd-u")


def test_a_method_no_longer_in_the_spec_moves_on_to_an_untried_one():
    s = spec("method=esd-x", "ladder=[esd-u]", "retry.max_attempts=5")
    assert next_attempt(s, "star", [PastAttempt("uce", {}, WEAK)]) == NextAttempt("esd-x", {})


def test_a_committed_concept_has_no_next_attempt():
    with pytest.raises(ValueError):
        next_attempt(spec(), "star", [PastAttempt("uce", {}, GateDecision(COMMIT, ()))])


def test_every_method_has_a_strength_knob_among_its_hyperparameters():
    for entry in catalog.METHODS:
        assert entry.strength in entry.defaults(), entry.name
        assert isinstance(entry.default_strength, (int, float))
