"""The state machine over a real journal: fresh, commit, retry, escalation, exhaustion, crash redo, finish."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from erasecore import catalog
from erasecore.contracts import DeltaRef, Estimate, GateReport, StepRequest
from orchestrator.campaign import (CommitAttempt, Finished, Halted, RunAttempt, SkipConcept, concept_states,
                                   next_action, step_request)
from erasecore.errors import ManifestError
from orchestrator.gate import GateDecision, limits
from orchestrator.loop import CampaignLoop, Callbacks, PhaseOutput
from orchestrator.manifest import Manifest
from orchestrator.preflight import preflight
from orchestrator.spec import load_spec

ACCEPT = GateDecision("commit", ("forgetting 0.97 >= 0.90",))
WEAK = GateDecision("reject", ("forgetting 0.62 < 0.90",), ("forgetting",))


def spec(tmp_path: Path, *overrides: str):
    return load_spec(None, ["name=toy", "concepts=[star,square,round]", f"storage_path={tmp_path / 'run'}",
                            *overrides])


def start(tmp_path: Path, *overrides: str):
    s = spec(tmp_path, *overrides)
    return s, Manifest.create(s.storage_path, s)


def run(m: Manifest, action: RunAttempt, decision: GateDecision) -> DeltaRef:
    """What the driver does for a RunAttempt, with a fake worker writing a fake delta."""
    m.record_start(action.step, action.concept, action.attempt, action.method, action.hparams)
    out = m.attempt_path(action.step, action.concept, action.attempt)
    out.mkdir(parents=True, exist_ok=True)
    payload = f"{action.concept}-{action.attempt}".encode()
    (out / "delta.safetensors").write_bytes(payload)
    ref = DeltaRef(str(out / "delta.safetensors"), hashlib.sha256(payload).hexdigest())
    m.record_result(action.step, action.attempt, decision, None, ref)
    return ref


def gate_report(concept: str, decision: GateDecision) -> GateReport:
    """A report that the real gate judges as `decision` says (forgetting 0.97 passes, 0.62 does not)."""
    forgetting = 0.97 if decision.committed else 0.62
    good = Estimate(0.99, 0.95, 1.0, 96)
    return GateReport(concept=concept, forgetting=Estimate(forgetting, forgetting - 0.05, forgetting + 0.02, 96),
                      target_acc=Estimate(0.03, 0.01, 0.07, 96), base_target_acc=0.9, evasion={}, retain=good,
                      retain_by_distance={}, leakage=Estimate(0.0, 0.0, 0.04, 96), kl=0.0, kl_base_noise=0.0,
                      cumulative={}, images_generated=96, early_stopped=False, seconds=0.1,
                      drift=Estimate(0.0, 0.0, 0.04, 96))


class FakeExecutor:
    """The loop's phases without a model: erase writes a fake delta, validate says what `verdicts` say."""

    def __init__(self, m: Manifest, verdicts: dict[str, list[GateDecision]]):
        self.m, self.verdicts = m, verdicts

    def erase(self, a: RunAttempt, request, watch=None) -> PhaseOutput:
        out = Path(request.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        payload = f"{a.concept}-{a.attempt}".encode()
        (out / "delta.safetensors").write_bytes(payload)
        return PhaseOutput("erase", DeltaRef(str(out / "delta.safetensors"), hashlib.sha256(payload).hexdigest()),
                           "", None, 0.0, "")

    def validate(self, a: RunAttempt, request, candidate, watch=None) -> PhaseOutput:
        return PhaseOutput("validate", gate_report(a.concept, self.verdicts[a.concept].pop(0)), "", None, 0.0, "")


class Runs(Callbacks):
    def __init__(self):
        self.runs: list[RunAttempt] = []

    def attempt_started(self, a, request) -> None:
        self.runs.append(a)


def drive(s, m: Manifest, verdicts: dict[str, list[GateDecision]]):
    """The driver's own loop (orchestrator.loop) with a fake executor; (outcome, the attempts it ran)."""
    runs = Runs()
    outcome = CampaignLoop(preflight(s, run=False), m, FakeExecutor(m, verdicts), [runs]).run()
    return outcome, runs.runs


def test_a_fresh_campaign_starts_with_the_first_concept(tmp_path):
    s, m = start(tmp_path, "hparams.uce.lam=0.2")
    assert next_action(s, m.history) == RunAttempt(1, "star", 1, "uce", {"lam": 0.2}, (), ())
    assert [c.state for c in concept_states(s, m.history)] == ["pending"] * 3


def test_an_accepted_attempt_is_committed_then_the_next_concept_builds_on_it(tmp_path):
    s, m = start(tmp_path)
    ref = run(m, next_action(s, m.history), ACCEPT)
    assert next_action(s, m.history) == CommitAttempt(1, "star", 1)
    m.commit(1, 1)
    nxt = next_action(s, m.history)
    assert (nxt.step, nxt.concept, nxt.attempt, nxt.method) == (2, "square", 1, "uce")
    assert nxt.erased_before == ("star",)
    assert nxt.parents == (DeltaRef("steps/1-star/attempt-1/delta.safetensors", ref.sha256),)
    assert [c.state for c in concept_states(s, m.history)] == ["committed", "pending", "pending"]


def test_a_rejected_attempt_is_retried_stronger_with_the_next_number(tmp_path):
    s, m = start(tmp_path)
    run(m, next_action(s, m.history), WEAK)
    assert concept_states(s, m.history)[0].state == "rejected"
    assert next_action(s, m.history) == RunAttempt(1, "star", 2, "uce", {"erase_scale": 2.0}, (), ())


def test_two_rejections_escalate_up_the_ladder(tmp_path):
    s, m = start(tmp_path, "retry.max_attempts=4")
    run(m, next_action(s, m.history), WEAK)
    run(m, next_action(s, m.history), WEAK)
    assert next_action(s, m.history) == RunAttempt(1, "star", 3, "esd-x", {}, (), ())


@pytest.mark.parametrize("on_exhausted", ["skip", "halt"])
def test_an_exhausted_budget_skips_or_halts(tmp_path, on_exhausted):
    s, m = start(tmp_path, f"retry.on_exhausted={on_exhausted}")
    for _ in range(3):
        run(m, next_action(s, m.history), WEAK)
    action = next_action(s, m.history)
    if on_exhausted == "skip":
        assert action == SkipConcept(1, "star", "'star': all 3 attempts rejected")
        m.skip(action.step, action.concept, action.reason)
        nxt = next_action(s, m.history)
        assert (nxt.step, nxt.concept, nxt.erased_before, nxt.parents) == (2, "square", (), ())
    else:
        assert action == Halted("'star': all 3 attempts rejected", 1, "star")


def test_a_started_but_unfinished_attempt_is_redone_with_the_same_number(tmp_path):
    s, m = start(tmp_path)
    run(m, next_action(s, m.history), WEAK)
    crashed = next_action(s, m.history)
    m.record_start(crashed.step, crashed.concept, crashed.attempt, crashed.method, crashed.hparams)
    # ... the driver dies here; a new one reads the journal from disk.
    again = next_action(s, Manifest.open(s.storage_path).history)
    assert again == RunAttempt(1, "star", 2, "uce", {"erase_scale": 2.0}, (), (), redo=True)
    assert concept_states(s, m.history)[0].state == "running"
    run(Manifest.open(s.storage_path), again, ACCEPT)   # record_start accepts the redo
    assert next_action(s, Manifest.open(s.storage_path).history) == CommitAttempt(1, "star", 2)


def test_a_whole_campaign_finishes_and_committed_steps_are_never_redone(tmp_path):
    s, m = start(tmp_path)
    outcome, ran = drive(s, m, {"star": [ACCEPT], "square": [WEAK, WEAK, WEAK], "round": [WEAK, ACCEPT]})
    assert (outcome.status, outcome.committed, outcome.skipped) == ("finished", ("star", "round"), ("square",))
    runs = [(a.concept, a.attempt) for a in ran]
    assert runs == [("star", 1), ("square", 1), ("square", 2), ("square", 3), ("round", 1), ("round", 2)]
    reopened = Manifest.open(s.storage_path)
    assert reopened.status == "finished"
    # resuming a finished campaign does nothing
    assert next_action(s, reopened.history) == Finished(committed=("star", "round"), skipped=("square",))
    assert [Path(d.path).parent.name for d in reopened.committed_deltas()] == ["attempt-1", "attempt-2"]
    assert [c.state for c in concept_states(s, reopened.history)] == ["committed", "skipped", "committed"]


def test_a_committed_group_step_has_erased_each_of_its_members(tmp_path):
    s = load_spec(None, ["name=toy", "concepts=[circle + semicircle, star]", f"storage_path={tmp_path / 'run'}"])
    m = Manifest.create(s.storage_path, s)
    first = next_action(s, m.history)
    assert (first.step, first.concept) == (1, "circle + semicircle")
    run(m, first, ACCEPT)
    m.commit(1, 1)
    nxt = next_action(s, m.history)
    assert (nxt.step, nxt.concept, nxt.erased_before) == (2, "star", ("circle", "semicircle"))
    run(m, nxt, ACCEPT)
    m.commit(2, 1)
    assert next_action(s, m.history) == Finished(("circle", "semicircle", "star"), ())


def test_the_last_concept_sees_every_committed_parent(tmp_path):
    s, m = start(tmp_path)
    _, ran = drive(s, m, {"star": [ACCEPT], "square": [ACCEPT], "round": [ACCEPT]})
    last_run = ran[-1]
    assert last_run.erased_before == ("star", "square")
    assert [p.path for p in last_run.parents] == ["steps/1-star/attempt-1/delta.safetensors",
                                                  "steps/2-square/attempt-1/delta.safetensors"]


def test_a_cancelled_campaign_halts(tmp_path):
    s, m = start(tmp_path)
    m.set_status("cancelled")
    assert next_action(s, m.history) == Halted("campaign cancelled")


def test_a_spec_that_reorders_worked_on_concepts_is_refused(tmp_path):
    s, m = start(tmp_path)
    run(m, next_action(s, m.history), WEAK)
    reordered = spec(tmp_path, "concepts=[square,star,round]")
    with pytest.raises(ManifestError, match="'star' at step 1"):
        next_action(reordered, m.history)


def test_step_request_has_absolute_paths_and_the_gate_thresholds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_spec(None, ["name=toy", "concepts=[star,square]", "preserve=[diamond]", "seed=7",
                         "gate.min_forgetting=0.8", "gate.max_attack=0.5", "validation.seeds=3"])
    action = RunAttempt(2, "square", 3, "esd-x", {"eta": 2.0}, ("star",),
                        (DeltaRef("steps/1-star/attempt-1/delta.safetensors", "ab" * 32),))
    request = step_request(action, preflight(s, run=False))
    assert isinstance(request, StepRequest)
    assert request.validation.judge == "toyworld"   # settled: a worker never sees "auto"
    root = os.path.abspath("runs/toy")
    assert request.out_dir == os.path.join(root, "steps", "2-square", "attempt-3")
    assert request.parents == (DeltaRef(os.path.join(root, "steps/1-star/attempt-1/delta.safetensors"), "ab" * 32),)
    assert (request.campaign, request.step, request.attempt, request.concept) == ("toy", 2, 3, "square")
    # settled once: the attempt's override over every catalog default, as request.json and the delta record them
    assert (request.method, request.model) == ("esd-x", "toyworld")
    assert request.hparams == {**catalog.get("esd-x").resolve({}), "eta": 2.0} and len(request.hparams) > 1
    assert (request.erased_before, request.preserve, request.seed) == (("star",), ("diamond",), 7)
    # the gate's thresholds travel whole, max_attack included (sequential sampling stops at them)
    assert request.validation.seeds == 3 and request.validation.limits == limits(s.gate)
    assert request.validation.limits.min_forgetting == 0.8 and request.validation.limits.max_attack == 0.5
    assert request.cache_dir == os.path.join(root, "cache")


def test_steps_auto_runs_a_group_step_first_and_its_members_only_if_it_is_refused(tmp_path):
    def auto(where: str):
        s = load_spec(None, ["name=toy", "concepts=[red star,green star,square]", "steps=auto",
                             "retry.max_attempts=1", f"storage_path={tmp_path / where}"])
        return s, Manifest.create(s.storage_path, s)

    # The group step commits: its members' own steps are covered (journaled, nothing run), then square.
    s, m = auto("commits")
    _, ran = drive(s, m, {"red star + green star": [ACCEPT], "square": [ACCEPT]})
    assert [a.concept for a in ran] == ["red star + green star", "square"]
    assert [(o.step, o.outcome) for o in m.history.outcomes] == [(1, "committed"), (2, "covered"), (3, "covered"),
                                                                 (4, "committed")]
    settled = preflight(s, run=False).spec
    assert settled.concepts == ["red star + green star", "red star", "green star", "square"]
    assert next_action(settled, m.history) == Finished(("red star", "green star", "square"), ())
    assert [c.state for c in concept_states(settled, m.history)] == ["committed", "covered", "covered", "committed"]
    # The group step is refused: each member gets its own step, built on what committed before it; a member
    # committed on its own is not listed as skipped although the group step that named it was.
    s, m = auto("refused")
    _, ran = drive(s, m, {"red star + green star": [WEAK], "red star": [ACCEPT], "green star": [WEAK],
                          "square": [ACCEPT]})
    assert [(a.concept, a.erased_before) for a in ran] == [
        ("red star + green star", ()), ("red star", ()), ("green star", ("red star",)), ("square", ("red star",))]
    assert next_action(preflight(s, run=False).spec, m.history) == Finished(("red star", "square"), ("green star",))
