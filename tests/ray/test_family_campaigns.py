"""A whole campaign through Ray on each real family's path: a tiny random-weight pipeline and a tiny random
CLIP judge, both saved to disk and loaded by the loaders a hub id uses (numbers meaningless, path real)."""
from __future__ import annotations

import pytest

from orchestrator.manifest import Manifest, sha256_file
from orchestrator.ray.driver import run_campaign
from orchestrator.spec import load_spec
from tests.fixtures.tiny_pipelines import (
    save_tiny_clip,
    tiny_sd3_pipeline,
    tiny_sd_pipeline,
    tiny_sdxl_pipeline,
)
from tests.ray.conftest import FORCE_COMMIT

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]   # a Ray of its own, not one already running
BUILDERS = {"sd": tiny_sd_pipeline, "sdxl": tiny_sdxl_pipeline, "sd3": tiny_sd3_pipeline}


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.mark.parametrize("family", list(BUILDERS))
def test_a_campaign_on_a_saved_pipeline_with_a_clip_judge_commits(family, tmp_path, clip_dir):
    BUILDERS[family](0).save_pretrained(tmp_path / family)
    gate = [f"gate.{k}={v}" for k, v in FORCE_COMMIT.items()]
    spec = load_spec(None, [f"name={family}", f"model={tmp_path / family}", "concepts=[star]", "method=esd-x",
                            "ladder=[]", "hparams.esd-x.steps=2", "hparams.esd-x.batch=2", "concepts_from=toyworld",
                            "validation.judge=clip", f"validation.judge_model={clip_dir}", "validation.seeds=1",
                            "validation.inference_steps=2", "validation.max_prompts_per_group=2",
                            "retry.max_attempts=1", "tracking.mode=disabled", f"storage_path={tmp_path / 'runs'}",
                            # random weights erase nothing: forgetting lands on the forced gate's 0.0 threshold,
                            # where the gate's extension would toss a coin; this test is about the path
                            "validation.extend_seeds=0", *gate,
                            # nor draw one: the judge self-check refuses star unless told to flag it
                            "validation.allow_weak_judge=true"])
    outcome = run_campaign(spec, echo=lambda line: None)
    assert outcome.status == "finished" and outcome.committed == ("star",)
    manifest = Manifest.open(spec.storage_path)
    (attempt,) = manifest.history.attempts
    (checked,) = manifest.history.judge_checks   # before the erase, journaled: star flagged, not refused
    assert [c.verdict for c in checked.check.concepts] == ["flagged"]
    assert attempt.report.target_acc.n > 0 and "leakage" in attempt.report.unjudged
    (ref,) = manifest.committed_deltas()
    assert sha256_file(ref.path) == ref.sha256
