"""The ETA: pieces on made-up numbers, then a replay of a recorded toy campaign (tests/fixtures/recorded_toy/).

The recording is one `erase run configs/campaigns/toy.yaml` on a 2-core machine shared with other jobs
(so its phases are slow and their pace drifts): star and square committed at their first UCE attempt,
round rejected twice (UCE) and once (ESD-x, 150 steps, 7m43s), then skipped. The replay rebuilds, every
5 seconds, what the journal and the progress files held at that moment, and asks the ETA.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import pytest

from erasecore.phase_progress import ProgressRecord, read_records
from orchestrator.eta import Eta, InFlight, PhaseTime, estimate, from_records
from orchestrator.live import measured_phases
from orchestrator.manifest import STARTED, History, Manifest, attempt_dir
from orchestrator.spec import load_spec
from tests.unit.test_campaign import WEAK, start

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded_toy"


def train(step: int, total: int, rate: float) -> ProgressRecord:
    return ProgressRecord(t=float(step), phase="erase", stage="train", step=step, total=total, steps_per_s=rate)


def test_text_is_a_range_with_lower_bounds_marked_and_a_question_mark_only_when_nothing_is_known():
    assert Eta(70.0, 70.0).text() == "1m10s"
    assert Eta(70.0, 300.0).text() == "1m10s to 5m00s"
    assert Eta(70.0, 300.0, low_partial=False, high_partial=True).text() == "1m10s to 5m00s+"
    assert Eta(0.0, 0.0, True, True).text() == "?"


def test_the_running_phase_uses_its_rate_and_an_unmeasured_method_its_own_pace(tmp_path):
    s, m = start(tmp_path, "concepts=[star]", "ladder=[esd-x]", "retry.max_attempts=3")
    m.record_start(1, "star", 1, "esd-x", {})
    inflight = InFlight(1, 1, "esd-x", "erase", phase_elapsed=50.0, records=(train(40, 100, 2.0),))
    eta = estimate(s, m.history, [PhaseTime(9, 1, "uce", "validate", 20.0)], inflight)
    assert eta.phase_left == 30.0                        # 60 steps at 2 steps/s
    assert eta.low == 30.0 + 20.0                        # + a validation (measured on another method)
    # high: star's ladder after this attempt: one more ESD-x (its own pace: 50 + 30 s, + 20 s validation);
    # esd-x is the ladder's last method, so the policy stops there although max_attempts is 3.
    assert eta.high == 50.0 + 100.0 and not eta.high_partial


def test_a_validation_still_drawing_its_baseline_counts_the_candidate_after_it(tmp_path):
    s, m = start(tmp_path, "concepts=[star]")
    m.record_start(1, "star", 1, "uce", {})
    baseline = ProgressRecord(t=1.0, phase="validate", stage="baseline", images=30, images_total=100, images_per_s=10.0)
    grid = ProgressRecord(t=2.0, phase="validate", stage="grid")
    for records in ((baseline,), (baseline, grid)):   # a grid after the baseline: the candidate is still to come
        eta = estimate(s, m.history, [PhaseTime(1, 1, "uce", "erase", 5.0)], InFlight(1, 1, "uce", "validate", 9.0,
                                                                                          records))
        assert eta.phase_left == (70 + 100) / 10.0


def test_high_counts_the_escalation_ladder_and_unmeasured_methods_make_it_a_lower_bound(tmp_path):
    s, m = start(tmp_path, "concepts=[star,square]", "ladder=[esd-x]", "retry.max_attempts=4")
    m.record_start(1, "star", 1, "uce", {})
    m.record_result(1, 1, WEAK)
    measured = [PhaseTime(1, 1, "uce", "erase", 10.0), PhaseTime(1, 1, "uce", "validate", 30.0)]
    eta = estimate(s, m.history, measured)
    # low: star's next attempt (uce) + square's first (uce).
    # high: star's uce, esd-x, esd-x (4 in all) + square's uce, uce, esd-x, esd-x; an ESD-x attempt counts only
    # its validation, since no ESD-x erase was measured: a lower bound.
    assert eta.low == 80.0 and not eta.low_partial
    assert eta.high == 40.0 * 3 + 30.0 * 4 and eta.high_partial
    assert eta.text() == "1m20s to 4m00s+"


# ---- the recorded campaign ---------------------------------------------------------------------

def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@pytest.fixture(scope="module")
def recorded():
    manifest = Manifest.open(RECORDED)
    spec = load_spec(str(RECORDED / "spec.yaml"), [f"storage_path={RECORDED}"])
    return spec, manifest


def history_at(h: History, t: float) -> History:
    """The journal as it stood at time t: later attempts absent, unfinished ones "started"."""
    attempts = []
    for a in h.attempts:
        if ts(a.started_at) > t:
            continue
        if a.finished_at and ts(a.finished_at) <= t:
            attempts.append(a)
        else:
            attempts.append(dataclasses.replace(a, status=STARTED, finished_at="", report=None, decision=None,
                                                candidate=None))
    return History(h.campaign, h.spec_hash, "running", tuple(attempts),
                   tuple(c for c in h.commits if ts(c.committed_at) <= t),
                   tuple(o for o in h.outcomes if ts(o.at) <= t))


def eta_at(spec, h: History, t: float) -> Eta:
    """What `erase status` would have said at time t (the snapshot's own steps, on files cut at t)."""
    history = history_at(h, t)
    inflight, done = None, []
    started = [a for a in history.attempts if a.status == STARTED]
    if started:
        a = started[-1]
        records = read_records(RECORDED / attempt_dir(a.step, a.concept, a.attempt))
        inflight, done = from_records(a.step, a.attempt, a.method, records, t, ts(a.started_at))
    return estimate(spec, history, measured_phases(RECORDED, history) + done, inflight)


def old_eta_at(spec, h: History, t: float) -> float | None:
    """The ETA this replaces: mean attempt time x concepts left - time the current attempt has run."""
    history = history_at(h, t)
    finished = [ts(a.finished_at) - ts(a.started_at) for a in history.attempts if a.finished_at]
    if not finished:
        return None
    left = len(spec.concepts) - len(history.outcomes)
    current = [ts(a.started_at) for a in history.attempts if a.status == STARTED]
    return max(0.0, sum(finished) / len(finished) * left - (t - current[-1] if current else 0.0))


def test_replaying_the_recorded_campaign_the_eta_is_never_zero_or_unknown_while_work_remains(recorded):
    spec, manifest = recorded
    begin, end = ts(manifest.created_at), ts(manifest.updated_at)
    first_phase_end = min(r.t for r in read_records(RECORDED / "steps/1-star/attempt-1") if r.stage == "end")
    seen = []
    for t in range(int(begin) + 1, int(end), 5):
        eta, actual = eta_at(spec, manifest.history, t), end - t
        seen.append((t - begin, actual, eta.text()))
        if t > first_phase_end:
            assert eta.text() != "?", seen[-1]                         # measured from the first phase on
        if actual > 20:   # never a bare "0s" before the end (low may be ~0 while a last attempt awaits its gate)
            assert eta.text() != "0s" and (eta.high >= 1.0 or eta.text() == "?"), seen[-1]
        assert eta.low <= 1.25 * actual + 10, seen[-1]              # low: if every attempt passes from now
        if not eta.high_partial:
            assert actual <= 1.5 * eta.high + 60, seen[-1]          # high: every retry (+: only a lower bound)
    assert len(seen) > 200


def test_during_the_long_esd_x_erase_the_eta_follows_the_actual_time(recorded):
    spec, manifest = recorded
    end = ts(manifest.updated_at)
    records = read_records(RECORDED / "steps/3-round/attempt-3", "erase")
    steps = [r for r in records if r.stage == "train"]
    begin_at, end_at = steps[len(steps) // 10].t, records[-1].t             # from 10% of its steps to its end
    errors = []
    for t in range(int(begin_at), int(end_at), 5):
        eta = eta_at(spec, manifest.history, t)
        assert eta.low == eta.high and not eta.low_partial     # round's last attempt: nothing after it to guess
        errors.append(abs(eta.low - (end - t)) / (end - t))
    assert max(errors) < 0.3 and sum(errors) / len(errors) < 0.15, errors


def test_where_the_old_eta_said_0s_the_new_one_says_minutes(recorded):
    spec, manifest = recorded
    end = ts(manifest.updated_at)
    round_esd = manifest.history.attempts_for(3)[-1]
    t = ts(round_esd.started_at) + 180                # 3 minutes into round's ESD-x attempt, 6m30s before the end
    assert old_eta_at(spec, manifest.history, t) == 0.0
    eta = eta_at(spec, manifest.history, t)
    assert end - t > 360 and abs(eta.low - (end - t)) < 0.3 * (end - t), (eta.text(), end - t)
