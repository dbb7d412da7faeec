"""A gate split over shards gives the unsharded gate's report: same images, same numbers, same early stop.

Each pair runs one toy concept twice through the driver on a local Ray session, once with one shard
and once with two (the validation task plus one helper actor), with small looks so the gate has
several; the journaled reports must be equal in every field but the wall seconds.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from erasecore.codec import to_json
from orchestrator.manifest import Manifest
from orchestrator.ray.driver import run_campaign
from tests.fixtures.reports import timeless

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]


def gate(campaign, name: str, shards: int, early_stop: bool):
    spec, _ = campaign(name, ["star"], validation={"seeds": 1, "inference_steps": 3, "max_prompts_per_group": 4,
                                                   "batch_size": 4, "shards": shards, "early_stop": early_stop,
                                                   "allow_weak_judge": True})   # 3 steps barely draw a star
    assert run_campaign(spec, echo=lambda line: None).status == "finished"
    (attempt,) = Manifest.open(spec.storage_path).history.attempts
    log = (Path(spec.storage_path) / "steps/1-star/attempt-1/validate.log").read_text()
    return attempt, log


@pytest.mark.parametrize("early_stop", [True, False])
def test_sharded_gate_reports_exactly_the_unsharded_report(campaign, early_stop):
    one, _ = gate(campaign, f"one-{early_stop}", 1, early_stop)
    two, log = gate(campaign, f"two-{early_stop}", 2, early_stop)

    assert "2 of 2 shards joined" in log
    assert one.candidate.sha256 == two.candidate.sha256
    same = [to_json(timeless(a.report)) for a in (one, two)]
    assert same[0] == same[1]
    # FAST's gate passes anything, so its stop thresholds are met after a look or two: the sharded gate
    # drew the next look ahead and dropped it; without early stop every look is merged.
    assert one.report.early_stopped is early_stop
