"""configs/campaigns/zimage-lora.yaml: preflight (run=False) and `erase plan` at real size, with the hub id's
configs in a Hugging Face cache written from the published architecture (configs/models/reference_models.json),
offline: the family is read from its model_index.json and the planner counts the 6B transformer on meta."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.cli_runner import REPO

pytestmark = pytest.mark.e2e

CAMPAIGN = "configs/campaigns/zimage-lora.yaml"
HUB_ID = "Tongyi-MAI/Z-Image-Turbo"
INDEX = {"_class_name": "ZImagePipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
         "text_encoder": ["transformers", "Qwen3Model"], "tokenizer": ["transformers", "Qwen2Tokenizer"],
         "transformer": ["diffusers", "ZImageTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]}


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    """A Hugging Face cache holding the campaign's model as configs only (no weights)."""
    root = tmp_path_factory.mktemp("hub")
    repo = root / f"models--{HUB_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    (snapshot / "model_index.json").write_text(json.dumps(INDEX))
    reference = json.loads((REPO / "configs/models/reference_models.json").read_text())["models"]["zimage"]
    for name, component in reference["components"].items():
        (snapshot / name).mkdir()
        (snapshot / name / "config.json").write_text(json.dumps(component["config"]))
    return root


def run(hub: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "launch.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, check=False, timeout=300)


def test_the_campaign_passes_preflight_as_a_zimage_lora_campaign(hub_cache, monkeypatch):
    from orchestrator.preflight import preflight
    from orchestrator.spec import load_spec

    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    settled = preflight(load_spec(str(REPO / CAMPAIGN), []), run=False)
    assert settled.family == "zimage" and list(settled.hparams) == ["lora"]
    lora = settled.hparams["lora"]
    assert (lora["rank"], lora["alpha"], lora["target_modules"]) == (8, 16, ["to_q", "to_k", "to_v"])


def test_erase_plan_counts_the_real_size_model_and_fits_one_80_gb_gpu(hub_cache):
    result = run(hub_cache, "plan", CAMPAIGN, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads(result.stdout)
    assert plan["fits"], plan
    text = run(hub_cache, "plan", CAMPAIGN)
    assert "step lora" in text.stdout and "weights: transformer" in text.stdout, text.stdout
