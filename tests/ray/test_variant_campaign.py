"""A short campaign of attribute variants on a local Ray: every gate within the cumulative budget,
every 3rd gate a full sweep, and the final sweep journaled and in the report."""
from __future__ import annotations

import pytest

from orchestrator.manifest import Manifest
from orchestrator.outputs.report import render_report
from orchestrator.ray.driver import run_campaign

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]

VARIANTS = ["red star", "blue square", "small green circle"]


def test_a_variant_campaign_with_bounded_checks_ends_with_a_sweep(campaign):
    spec, _ = campaign("variants", VARIANTS, validation={"seeds": 1, "inference_steps": 5, "max_prompts_per_group": 4,
                                                         "early_stop": False, "cumulative_budget": 3,
                                                         "sweep_every": 3, "final_sweep": "report"})
    lines: list[str] = []
    outcome = run_campaign(spec, echo=lines.append)

    assert outcome.status == "finished" and outcome.committed == tuple(VARIANTS)
    history = Manifest.open(spec.storage_path).history
    reports = {a.step: a.report for a in history.attempts}
    assert set(reports[2].cumulative) == {"red star"} and reports[2].cumulative["red star"].n == 3   # budget 3
    assert {c: e.n for c, e in reports[3].cumulative.items()} == {"red star": 4, "blue square": 4}   # sweep, capped
    sweep, = history.sweeps
    assert sweep.concepts == tuple(VARIANTS) and sweep.error == ""
    assert {c: e.n for c, e in sweep.report.cumulative.items()} == {c: 7 for c in VARIANTS}   # every prompt
    assert any(line.startswith("final sweep") or "final sweep" in line for line in lines)
    assert "Final sweep" in render_report(spec.storage_path)
