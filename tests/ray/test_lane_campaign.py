"""A speculative campaign on a local Ray whose node says it has 2 GPUs (the toy phases run on the CPU inside
their GPU-holding tasks): the driver keeps the erase lane while it runs and gives it back at the end, and
baselines drawn ahead (resources.prefetch_baselines) fill the cache before the gates that need them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray

from orchestrator.ray.driver import run_campaign

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def gpu_ray(toy_world):
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False,
             object_store_memory=200 * 1024 * 1024, logging_level="WARNING")
    yield
    ray.shutdown()


def test_a_speculative_campaign_on_gpus_runs_its_erases_beside_the_lane_and_gives_it_back(gpu_ray, campaign):
    spec, _ = campaign("lane", ["star", "square"],
                       resources={"speculative": True, "gpus_per_step": 1, "validation_gpus": 1, "cpus_per_step": 1})
    outcome = run_campaign(spec, echo=lambda line: None)
    assert outcome.status == "finished" and outcome.committed == ("star", "square")
    groups = list(ray.util.placement_group_table().values())
    lanes = [g for g in groups if g["bundles"] == {0: {"GPU": 1.0, "CPU": 1.0}}]
    assert len(lanes) == 1 and lanes[0]["state"] == "REMOVED"   # made for the campaign, given back at its end


def test_baselines_drawn_ahead_fill_the_cache_and_the_gates_draw_only_their_candidates(gpu_ray, campaign):
    spec, _ = campaign("prefetch", ["star", "square"],
                       resources={"speculative": True, "gpus_per_step": 1, "validation_gpus": 1, "cpus_per_step": 1,
                                  "prefetch_baselines": 1})
    root = Path(spec.storage_path)
    (root / "cache").unlink()   # a cache of its own: every base image is drawn in this campaign
    (root / "cache").mkdir()
    outcome = run_campaign(spec, echo=lambda line: None)
    assert outcome.status == "finished" and outcome.committed == ("star", "square")
    for step in ("1-star", "2-square"):
        assert "observations cached" in (root / "steps" / step / "baseline" / "baseline.log").read_text()
        stages = [json.loads(line)["stage"] for line in
                  (root / "steps" / step / "attempt-1" / "progress.jsonl").read_text().splitlines()]
        assert "candidate" in stages and "baseline" not in stages   # the gate found its baseline in the cache
