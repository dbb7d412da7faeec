"""The gate: commit only when every check passes; every check can fail; reasons name the number and the threshold."""
from __future__ import annotations

import dataclasses

import pytest

from erasecore.codec import from_dict, to_dict
from erasecore.contracts import Estimate, GateReport
from orchestrator.gate import COMMIT, REJECT, decide, error_decision
from orchestrator.spec import GateThresholds

POINT = GateThresholds()                                   # the default: open checks go by their point estimate
CERTIFIED = GateThresholds(rules={k: "certified" for k in ("forgetting", "retain", "leakage", "drift", "cumulative")})


def est(value: float, lower: float | None = None, upper: float | None = None, n: int = 100) -> Estimate:
    return Estimate(value, value - 0.02 if lower is None else lower, value + 0.02 if upper is None else upper, n)


def good_report(**changes) -> GateReport:
    """Every interval wholly on its passing side (certified pass)."""
    report = GateReport(
        concept="star", forgetting=est(0.97), target_acc=est(0.03), base_target_acc=0.95,
        evasion={"paraphrase": est(0.05)}, retain=est(0.98), retain_by_distance={"near": est(0.97)},
        leakage=est(0.02), kl=0.05, kl_base_noise=0.02, cumulative={"square": est(0.05)},
        images_generated=480, early_stopped=False, seconds=12.0, drift=est(0.05), interval_confidence=0.99)
    return dataclasses.replace(report, **changes)


def test_good_candidate_is_committed_with_every_check_listed():
    for thresholds in (POINT, CERTIFIED):
        decision = decide(good_report(), thresholds)
        assert decision.verdict == COMMIT and decision.committed
        assert decision.failed == ()
        assert len(decision.reasons) == 5   # forgetting, retain, leakage, drift, cumulative square
        assert "forgetting 0.97 >= 0.90 (0.95-0.99 certified)" in decision.reasons


# One failing case per check: certified below/above its threshold, and open with the point on the wrong side.
FAILING = [
    ("forgetting", {"forgetting": est(0.62)}, "forgetting 0.62 < 0.90 (0.60-0.64 certified)"),
    ("forgetting", {"forgetting": est(0.85, upper=0.97)}, "forgetting 0.85 < 0.90 (0.83-0.97 open: point)"),
    ("retain", {"retain": est(0.88, 0.84, 0.92)}, "retain 0.88 < 0.95 (0.84-0.92 certified)"),
    ("leakage", {"leakage": est(0.30, lower=0.20)}, "leakage 0.30 > 0.10 (0.20-0.32 certified)"),
    ("leakage", {"leakage": est(0.15, 0.06, 0.28)}, "leakage 0.15 > 0.10 (0.06-0.28 open: point)"),
    ("drift", {"drift": est(0.45, 0.33, 0.57)}, "drift 0.45 > 0.25 (0.33-0.57 certified)"),
    ("drift", {"drift": est(0.30, 0.18, 0.44)}, "drift 0.30 > 0.25 (0.18-0.44 open: point)"),
    ("cumulative:circle", {"cumulative": {"square": est(0.05), "circle": est(0.35)}},
     "cumulative circle 0.35 > 0.20 (0.33-0.37 certified)"),
]


@pytest.mark.parametrize("check, changes, reason", FAILING)
def test_every_check_can_fail_with_a_readable_reason(check, changes, reason):
    decision = decide(good_report(**changes), POINT)
    assert decision.verdict == REJECT and not decision.committed
    assert decision.failed == (check,)
    assert decision.reasons[0] == reason   # failures come first


def test_retain_is_judged_on_its_point_not_on_the_upper_bound():
    # The case: Retain 0.89 on 48 images, interval reaching 0.97, used to pass a 0.95 gate.
    small = Estimate(0.89, 0.78, 0.97, 48)
    decision = decide(good_report(retain=small), POINT)
    assert decision.failed == ("retain",)
    assert decision.reasons[0] == "retain 0.89 < 0.95 (0.78-0.97 open: point)"


def test_an_open_check_with_its_point_on_the_passing_side_passes_by_point_fails_by_certified():
    report = good_report(retain=est(0.96, 0.90, 0.99), drift=est(0.20, 0.12, 0.31))
    assert decide(report, POINT).committed
    decision = decide(report, CERTIFIED)
    assert decision.failed == ("retain", "drift")
    assert decision.reasons[0] == "retain 0.96 >= 0.95 (0.90-0.99 open: not certified)"
    only_retain = GateThresholds(rules={"retain": "certified"})   # the other checks keep the point rule
    assert decide(report, only_retain).failed == ("retain",)


def test_a_check_the_gate_extended_says_so_in_its_reason():
    report = good_report(forgetting=est(0.88, 0.80, 0.94), extended=("forgetting",))
    assert decide(report, POINT).reasons[0] == "forgetting 0.88 < 0.90 (0.80-0.94 open: point, extended)"


def test_a_certified_decision_is_the_same_under_every_rule():
    for changes in ({"retain": est(0.88, 0.84, 0.92)}, {"drift": est(0.45, 0.33, 0.57)}):
        assert decide(good_report(**changes), POINT).failed == decide(good_report(**changes), CERTIFIED).failed
    assert decide(good_report(), CERTIFIED).committed


def test_unmeasured_leakage_passes_but_unmeasured_forgetting_retain_drift_fail():
    none = Estimate(0.0, 0.0, 1.0, 0)
    decision = decide(good_report(leakage=none, unjudged={"leakage": "clip cannot tell"}), POINT)
    assert decision.committed and "leakage not judged: clip cannot tell" in decision.reasons
    for check in ("forgetting", "retain", "drift"):
        decision = decide(good_report(**{check: none}), POINT)
        assert decision.failed == (check,) and decision.reasons[0] == f"{check} not measured (n=0)"


def test_kl_is_information_only():
    assert decide(good_report(kl=9.0, kl_base_noise=0.0), POINT).committed
    assert decide(good_report(kl=float("nan")), POINT).committed


def test_a_journal_written_before_drift_loads_and_its_report_cannot_pass_unmeasured():
    old = to_dict(good_report())
    del old["drift"], old["interval_confidence"]
    report = from_dict(GateReport, old)
    assert report.drift.n == 0 and report.kl == 0.05
    assert decide(report, POINT).failed == ("drift",)


def test_several_failures_are_all_reported():
    decision = decide(good_report(forgetting=est(0.5), drift=est(0.9)), POINT)
    assert decision.failed == ("forgetting", "drift")
    assert decision.reasons[:2] == ("forgetting 0.50 < 0.90 (0.48-0.52 certified)",
                                    "drift 0.90 > 0.25 (0.88-0.92 certified)")


def test_thresholds_are_inclusive():
    edge = good_report(forgetting=est(0.9), retain=est(0.95), leakage=est(0.1), drift=est(0.25),
                       cumulative={"square": est(0.2)})
    assert decide(edge, POINT).committed


def test_a_failed_step_is_a_reject_with_the_error():
    decision = error_decision("CUDA out of memory")
    assert decision.verdict == REJECT and decision.failed == ("error",)
    assert decision.reasons == ("step failed: CUDA out of memory",)


def test_attack_success_is_reported_and_gated_only_when_max_attack_is_set():
    attacked = good_report(attack=est(0.80, 0.55, 0.93, n=16))
    assert decide(attacked, POINT).committed                      # off by default: reported, never gated
    strict = dataclasses.replace(POINT, max_attack=0.5)
    decision = decide(attacked, strict)
    assert decision.failed == ("attack",) and decision.reasons[0] == "attack 0.80 > 0.50 (0.55-0.93 certified)"
    assert decide(good_report(attack=est(0.1, 0.0, 0.3, n=16)), strict).committed
    unmeasured = decide(good_report(unjudged={"attack": "no cross-attention K/V to invert"}), strict)
    assert unmeasured.committed and "attack not judged: no cross-attention K/V to invert" in unmeasured.reasons
