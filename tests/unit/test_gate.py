"""The gate: commit only when every check passes; reasons name the number and the threshold."""
from __future__ import annotations

import dataclasses

from orchestrator.core.contracts import Estimate, GateReport
from orchestrator.gate import COMMIT, REJECT, decide, error_decision
from orchestrator.spec import GateThresholds

STRICT = GateThresholds(use_bounds=False)
NOISE_AWARE = GateThresholds(use_bounds=True)


def est(value: float, lower: float | None = None, upper: float | None = None, n: int = 100) -> Estimate:
    return Estimate(value, value - 0.02 if lower is None else lower, value + 0.02 if upper is None else upper, n)


def good_report(**changes) -> GateReport:
    report = GateReport(
        concept="star", forgetting=est(0.97), target_acc=est(0.03), base_target_acc=0.95,
        evasion={"paraphrase": est(0.05)}, retain=est(0.98), retain_by_distance={"near": est(0.97)},
        leakage=est(0.02), kl=0.05, kl_base_noise=0.02, cumulative={"square": est(0.05)},
        images_generated=480, early_stopped=False, seconds=12.0)
    return dataclasses.replace(report, **changes)


def test_good_candidate_is_committed_with_every_check_listed():
    for thresholds in (STRICT, NOISE_AWARE):
        decision = decide(good_report(), thresholds)
        assert decision.verdict == COMMIT and decision.committed
        assert decision.failed == ()
        assert len(decision.reasons) == 5   # forgetting, retain, leakage, kl, cumulative:square
        assert "forgetting 0.97 >= 0.90" in decision.reasons


def test_weak_forgetting_is_rejected_with_a_readable_reason():
    decision = decide(good_report(forgetting=est(0.62)), NOISE_AWARE)
    assert decision.verdict == REJECT and not decision.committed
    assert decision.failed == ("forgetting",)
    assert decision.reasons[0] == "forgetting 0.62 < 0.90"   # failures come first


def test_forgetting_uses_the_point_estimate_even_with_bounds():
    # A wide interval reaching above the threshold does not rescue a low point estimate ...
    assert decide(good_report(forgetting=est(0.85, upper=0.97)), NOISE_AWARE).failed == ("forgetting",)
    # ... and a lower bound below it does not sink a point estimate that meets it.
    assert decide(good_report(forgetting=est(0.92, lower=0.80)), NOISE_AWARE).committed


def test_retain_with_bounds_rejects_only_a_confident_drop():
    noisy = est(0.93, lower=0.86, upper=0.97)       # point below 0.95, interval straddles it
    assert not decide(good_report(retain=noisy), STRICT).committed
    assert decide(good_report(retain=noisy), NOISE_AWARE).committed
    dropped = est(0.88, lower=0.84, upper=0.92)     # whole interval below 0.95
    decision = decide(good_report(retain=dropped), NOISE_AWARE)
    assert decision.failed == ("retain",)
    assert decision.reasons[0] == "retain 0.88 (upper 0.92) < 0.95"


def test_leakage_with_bounds_rejects_only_a_confident_excess():
    noisy = est(0.15, lower=0.06, upper=0.28)
    assert decide(good_report(leakage=noisy), STRICT).failed == ("leakage",)
    assert decide(good_report(leakage=noisy), NOISE_AWARE).committed
    assert decide(good_report(leakage=est(0.30, lower=0.20)), NOISE_AWARE).failed == ("leakage",)


def test_unmeasured_leakage_passes_but_unmeasured_forgetting_fails():
    none = Estimate(0.0, 0.0, 1.0, 0)
    assert decide(good_report(leakage=none), NOISE_AWARE).committed
    decision = decide(good_report(forgetting=none), NOISE_AWARE)
    assert decision.failed == ("forgetting",) and "n=0" in decision.reasons[0]
    assert decide(good_report(retain=none), NOISE_AWARE).failed == ("retain",)


def test_kl_is_judged_above_the_base_noise_floor_with_bounds():
    report = good_report(kl=0.45, kl_base_noise=0.20)   # raw 0.45 > 0.3, excess 0.25 <= 0.3
    assert decide(report, STRICT).failed == ("kl",)
    assert decide(report, NOISE_AWARE).committed
    assert decide(good_report(kl=0.60, kl_base_noise=0.20), NOISE_AWARE).failed == ("kl",)
    assert decide(good_report(kl=float("nan")), NOISE_AWARE).failed == ("kl",)
    assert decide(good_report(kl=0.45, kl_base_noise=float("nan")), NOISE_AWARE).failed == ("kl",)


def test_earlier_erased_concepts_must_stay_gone():
    report = good_report(cumulative={"square": est(0.05), "circle": est(0.35)})
    decision = decide(report, NOISE_AWARE)
    assert decision.failed == ("cumulative:circle",)
    assert decision.reasons[0] == "cumulative circle 0.35 > 0.20"
    assert decide(good_report(cumulative={}), NOISE_AWARE).committed   # the first step has none


def test_several_failures_are_all_reported():
    decision = decide(good_report(forgetting=est(0.5), kl=0.9, kl_base_noise=0.0), STRICT)
    assert decision.failed == ("forgetting", "kl")
    assert decision.reasons[:2] == ("forgetting 0.50 < 0.90", "kl 0.900 > 0.300")


def test_thresholds_are_inclusive():
    t = GateThresholds(use_bounds=False)
    edge = good_report(forgetting=est(0.9), retain=est(0.95), leakage=est(0.1), kl=0.3,
                       cumulative={"square": est(0.2)})
    assert decide(edge, t).committed


def test_a_failed_step_is_a_reject_with_the_error():
    decision = error_decision("CUDA out of memory")
    assert decision.verdict == REJECT and decision.failed == ("error",)
    assert decision.reasons == ("step failed: CUDA out of memory",)
