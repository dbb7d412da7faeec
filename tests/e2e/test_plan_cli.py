"""`erase plan` end to end on the toy campaign: the table, the overrides it proposes, JSON, and its errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.cli_runner import assert_one_line_error, erase

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TOY = "configs/campaigns/toy.yaml"


def test_plan_of_the_toy_campaign():
    result = erase("plan", TOY)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for step in ("step uce", "step esd-x", "step esd-u"):   # the method and its ladder
        assert step in out
    for word in ("weights: unet", "weights: frozen unet copy", "optimizer", "activations", "total", "verdict"):
        assert word in out
    assert "planned as if each worker had a GPU of 80 GiB" in out
    assert "schedule: serial (auto: steps ask for no GPU" in out   # the toy campaign runs on CPUs
    assert out.rstrip().endswith("plan: the configured settings fit every step; nothing to change.")


def test_the_proposed_overrides_make_it_fit():
    # 1.17 GiB: the CUDA overhead (1 GiB) leaves the toy's ESD-u step just too little.
    tight = erase("plan", TOY, "resources.gpu_memory_gb=1.17")
    assert tight.returncode == 0, tight.stderr
    line = tight.stdout.rstrip().splitlines()[-1]
    assert line.startswith("plan: add these overrides: "), tight.stdout
    overrides = line.removeprefix("plan: add these overrides: ").split()
    again = erase("plan", TOY, "resources.gpu_memory_gb=1.17", *overrides)
    assert again.returncode == 0, again.stderr
    assert again.stdout.rstrip().endswith("nothing to change.")


def test_json():
    result = erase("plan", TOY, "resources.num_workers=2", "hparams.esd-u.batch=8", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["fits"] and doc["overrides"] == []
    assert [s["method"] for s in doc["steps"]] == ["uce", "esd-x", "esd-u", "speed"]   # the search's method last
    assert doc["inventory"]["components"]["unet"] == 1077572
    esd_u = doc["steps"][2]["configured"]
    assert esd_u["settings"]["batch"] == 8 and esd_u["settings"]["num_workers"] == 2
    assert esd_u["terms_gib"]["overhead"] == 1.5   # two workers: NCCL buffers


def test_nothing_fits_exits_1_with_the_reason():
    result = erase("plan", TOY, "resources.gpu_memory_gb=0.5")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no settings fit 0.5 GiB GPUs" in result.stdout and "largest term: overhead" in result.stdout


@pytest.mark.parametrize("args, words", [
    (("no-such-campaign.yaml",), ["campaign file not found"]),
    ((TOY, "resources.gpu_memory_gb=lots"), ["resources.gpu_memory_gb"]),
    ((TOY, "hparams.esd-u.colour=red"), ["no hyperparameter", "colour"]),
    ((TOY, "model=/nonexistent/pipeline", "concepts=[car]"), ["no such directory"]),
    ((TOY, "resources.strategy=deepspeed", "resources.deepspeed_config=nope.json"), ["deepspeed_config"]),
], ids=["missing-file", "bad-override", "unknown-hparam", "missing-model", "missing-deepspeed-config"])
def test_bad_input_is_one_error_line(args, words):
    assert_one_line_error(erase("plan", *args), *words)
