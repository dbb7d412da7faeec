"""The final sweep in the state machine and the loop: run once after the last step, journaled, a rebound
reported and (final_sweep=halt) ending the campaign halted; nothing committed is reopened."""
from __future__ import annotations

import dataclasses

from orchestrator.campaign import Finished, Halted, next_action
from erasecore.contracts import Estimate
from orchestrator.loop import CampaignLoop, PhaseOutput
from orchestrator.manifest import Manifest
from orchestrator.preflight import preflight
from orchestrator.sweep import Sweep
from tests.unit.test_campaign import ACCEPT, FakeExecutor, gate_report, start


class SweepingExecutor(FakeExecutor):
    """Validate answers the sweep with each committed concept at the accuracy `drawn` gives it."""

    def __init__(self, m, verdicts, drawn):
        super().__init__(m, verdicts)
        self.drawn, self.sweeps = drawn, []

    def validate(self, a, request, candidate, watch=None):
        if not request.sweep:
            return super().validate(a, request, candidate, watch)
        self.sweeps.append((request, candidate))
        cumulative = {c: Estimate(self.drawn.get(c, 0.0), 0.0, 1.0, 14) for c in request.erased_before}
        report = dataclasses.replace(gate_report(a.concept, ACCEPT), cumulative=cumulative)
        return PhaseOutput("validate", report, "", None, 0.0, "")


def drive(tmp_path, mode: str, drawn: dict):
    s, m = start(tmp_path, f"validation.final_sweep={mode}")
    ex = SweepingExecutor(m, {c: [ACCEPT] for c in s.concepts}, drawn)
    outcome = CampaignLoop(preflight(s, run=False), m, ex).run()
    return s, Manifest.open(s.storage_path), outcome, ex


def test_the_sweep_runs_once_over_every_commit_and_is_journaled(tmp_path):
    s, m, outcome, ex = drive(tmp_path, "report", {"square": 0.5})
    assert outcome.status == "finished" and outcome.committed == ("star", "square", "round")
    (request, candidate), = ex.sweeps
    assert request.erased_before == ("star", "square", "round") and len(request.parents) == 2
    assert candidate.path.endswith("3-round/attempt-1/delta.safetensors")
    sweep, = m.history.sweeps
    assert sweep.rebounds == ("square",) and sweep.report.cumulative["square"].value == 0.5
    assert len(m.history.commits) == 3                                   # a rebound reopens nothing
    assert isinstance(next_action(s, m.history), Finished)               # and is not measured again


def test_a_rebound_halts_when_the_campaign_says_so(tmp_path):
    s, m, outcome, _ = drive(tmp_path, "halt", {"star": 0.6})
    assert outcome.status == "halted" and "star" in outcome.reason and m.status == "halted"
    assert isinstance(next_action(s, m.history), Halted)


def test_no_sweep_by_default_and_a_clean_sweep_finishes(tmp_path):
    _, m, outcome, ex = drive(tmp_path / "off", "none", {})
    assert outcome.status == "finished" and not ex.sweeps and not m.history.sweeps
    s, m, outcome, ex = drive(tmp_path / "halt", "halt", {})
    assert outcome.status == "finished" and len(ex.sweeps) == 1 and m.history.sweeps[0].rebounds == ()


def test_a_sweep_is_asked_for_after_the_last_commit(tmp_path):
    s, m, _, _ = drive(tmp_path, "none", {})
    s2 = dataclasses.replace(s, validation=dataclasses.replace(s.validation, final_sweep="report"))
    action = next_action(s2, m.history)
    assert isinstance(action, Sweep) and action.step == 4 and action.erased_before == ("star", "square", "round")


def test_the_report_shows_the_sweep_and_its_rebounds(tmp_path):
    from orchestrator.outputs.report import render_report

    s, _, _, _ = drive(tmp_path, "report", {"round": 0.7})
    page = render_report(s.storage_path)
    assert "Final sweep" in page and "1 of 3 committed concepts rebound: round 0.70" in page


def test_a_sweep_needs_the_toy_worlds_judge():
    import pytest

    from erasecore.errors import ConfigError
    from orchestrator.spec import load_spec

    with pytest.raises(ConfigError, match="final_sweep"):
        preflight(load_spec(None, ["name=x", "concepts=[nude person]", "model=/nowhere/sd", "validation.judge=nudenet",
                                   "validation.final_sweep=report"]), run=False)
