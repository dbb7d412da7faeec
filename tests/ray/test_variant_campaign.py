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


def test_a_group_step_is_journaled_gated_and_exported_like_any_step(campaign, tmp_path):
    """`steps: group`: the two stars are one step (one erase of their merged prompts, one gate asking each one's
    questions), journaled under the group's name, counted as both committed, exported as one adapter."""
    import json

    from launch.cli import main

    spec, _ = campaign("groups", ["red star", "square", "blue star"], steps="group",
                       validation={"seeds": 1, "inference_steps": 5, "max_prompts_per_group": 4, "early_stop": False})
    outcome = run_campaign(spec, echo=lambda line: None)

    assert outcome.status == "finished" and outcome.committed == ("red star", "blue star", "square")
    history = Manifest.open(spec.storage_path).history
    assert [(c.step, c.concept) for c in history.commits] == [(1, "red star + blue star"), (2, "square")]
    group = next(a for a in history.attempts if a.step == 1)
    assert group.report.concept == "red star + blue star" and not group.report.cumulative
    square = next(a for a in history.attempts if a.step == 2)
    assert set(square.report.cumulative) == {"red star", "blue star"}   # both members re-checked after the group
    assert [c.rates.concept for c in history.judge_checks[0].check.concepts] == ["red star", "blue star", "square"]
    out = tmp_path / "adapters"
    assert main(["export", str(spec.storage_path), "--format", "lora", "--per-concept", "--out", str(out)]) == 0
    adapters = json.loads((out / "adapters.json").read_text())["adapters"]
    assert [(a["step"], a["concept"]) for a in adapters] == [(1, "red star + blue star"), (2, "square")]
    assert "red star + blue star" in render_report(spec.storage_path)
