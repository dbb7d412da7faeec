"""Every mistake a user can make at the `erase` command line: one `error:` line on stderr, exit 2, no traceback.

Each case runs the real CLI in a subprocess (what a user sees); none of them needs Ray to start.
"""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from tests.e2e.cli_runner import assert_one_line_error, erase

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
GOOD = {"name": "mistakes", "model": "toyworld", "concepts": ["star"], "method": "uce"}


@pytest.fixture
def campaign_file(tmp_path):
    def write(**changes) -> Path:
        doc = {**GOOD, "storage_path": str(tmp_path / "runs"), **changes}
        path = tmp_path / "campaign.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path
    return write


@pytest.mark.parametrize("changes, words", [
    ({"colour": "red"}, ["unknown key", "colour"]),
    ({"retry": {"max_attempts": "many"}}, ["retry.max_attempts", "integer"]),
    ({"method": "telepathy"}, ["unknown method", "telepathy"]),
    ({"concepts": ["star", "unicorn"]}, ["unicorn"]),
    ({"concepts": []}, ["concepts is empty"]),
], ids=["unknown-key", "wrong-type", "unknown-method", "unknown-concept", "empty-list"])
def test_bad_campaign_file(campaign_file, tmp_path, changes, words):
    result = erase("run", str(campaign_file(**changes)))
    assert_one_line_error(result, *words)
    assert not (tmp_path / "runs").exists()   # nothing written for a campaign that never started


def test_bad_override(campaign_file):
    assert_one_line_error(erase("run", str(campaign_file()), "gate.min_retain=lots"), "gate.min_retain")


def test_a_negative_gate_extension_is_refused(campaign_file):
    assert_one_line_error(erase("run", str(campaign_file()), "validation.extend_seeds=-1", timeout=60),
                          "validation.extend_seeds", ">= 0")


def test_a_speculation_depth_under_one_is_refused(campaign_file):
    assert_one_line_error(erase("run", str(campaign_file()), "resources.speculation_depth=0", timeout=60),
                          "speculation_depth", ">= 1")


def test_a_negative_prefetch_is_refused(campaign_file):
    assert_one_line_error(erase("run", str(campaign_file()), "resources.prefetch_baselines=-1", timeout=60),
                          "prefetch_baselines", ">= 0")


def test_missing_campaign_file(tmp_path):
    assert_one_line_error(erase("run", str(tmp_path / "nowhere.yaml")), "not found", "nowhere.yaml")


def test_missing_model_directory(campaign_file, tmp_path):
    result = erase("run", str(campaign_file(model=str(tmp_path / "no-model"), concepts=["car"])))
    assert_one_line_error(result, "no such directory", "no-model")
    assert not (tmp_path / "runs").exists()


def test_a_method_the_models_family_cannot_take(campaign_file, tmp_path):
    model = tmp_path / "sd3"
    model.mkdir()
    (model / "model_index.json").write_text('{"_class_name": "StableDiffusion3Pipeline"}')
    result = erase("run", str(campaign_file(model=str(model), concepts=["car"], method="fmn")))
    assert_one_line_error(result, "method 'fmn' does not apply to sd3 models", "joint attention")


def test_a_batch_a_worker_group_cannot_split(campaign_file, tmp_path):
    path = campaign_file(method="esd-x", hparams={"esd-x": {"batch": 10}}, resources={"num_workers": 4})
    assert_one_line_error(erase("run", str(path)), "hparams.esd-x.batch is 10", "num_workers=4")
    assert not (tmp_path / "runs").exists()


def test_a_model_nothing_can_judge(campaign_file, tmp_path):
    model = tmp_path / "sdxl"
    model.mkdir()
    (model / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    result = erase("run", str(campaign_file(model=str(model), concepts=["car"])))
    assert_one_line_error(result, "validation.judge", "has no judge")
    assert not (tmp_path / "runs").exists()


def test_resume_without_a_campaign(tmp_path):
    assert_one_line_error(erase("resume", str(tmp_path)), "no campaign at")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]   # nothing listens once the socket is closed


@pytest.mark.parametrize("args", [("status", "some-job"), ("logs", "some-job"), ("cancel", "some-job"), ("list",)],
                         ids=["status", "logs", "cancel", "list"])
def test_unreachable_address(args):
    address = f"http://127.0.0.1:{closed_port()}"
    assert_one_line_error(erase(*args, "--address", address), f"cannot reach Ray at {address}")


def test_submit_to_unreachable_address(campaign_file):
    address = f"http://127.0.0.1:{closed_port()}"
    assert_one_line_error(erase("submit", str(campaign_file()), "--address", address), "cannot reach Ray")


def test_mistakes_a_new_user_made_are_one_line_before_ray_starts(campaign_file, tmp_path):
    """The four found by trying the CLI as a newcomer (each used to hang, or end in a traceback)."""
    assert_one_line_error(erase("run", str(campaign_file()), "resources.cpus_per_step=0", timeout=60),
                          "resources.cpus_per_step must be > 0")
    a_file = tmp_path / "taken"
    a_file.write_text("not a directory")
    assert_one_line_error(erase("run", str(campaign_file(storage_path=str(a_file))), timeout=60),
                          "storage_path", "not a directory")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if not __import__("os").access(locked, __import__("os").W_OK):   # root writes anywhere: nothing to test then
        assert_one_line_error(erase("run", str(campaign_file(storage_path=str(locked / "runs"))), timeout=60),
                              "not writable")
    not_json = tmp_path / "request.json"
    not_json.write_text("this is not json")
    assert_one_line_error(erase("step", str(not_json), timeout=60), "is not a step request")
    assert_one_line_error(erase("step", str(tmp_path / "absent.json"), timeout=60), "no such request file")


@pytest.mark.parametrize("override, words", [
    ("hparams.uce.bogus=1", ["hparams.uce", "bogus"]),
    ("hparams.esd-x.steps=ten", ["hparams.esd-x.steps", "an integer"]),
])
def test_a_bad_hyperparameter_is_refused_before_ray_starts(campaign_file, override, words):
    assert_one_line_error(erase("run", str(campaign_file()), override, timeout=60), *words)


def erase_with_hub(hub: Path, *args: str, timeout: float = 300):
    """The CLI with its Hugging Face cache at `hub` and the hub client left as a user has it (online)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME")}
    env["HF_HUB_CACHE"] = str(hub)
    return subprocess.run([sys.executable, "-m", "launch.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, check=False, timeout=timeout)


@pytest.mark.parametrize("command", ["plan", "run"])
def test_a_hub_model_not_in_the_local_cache_is_one_line_before_anything_starts(tmp_path, command):
    """No hub client retries, no Ray: the lookup is in the cache's files, before the plan or the driver."""
    import time

    hub = tmp_path / "hub"
    hub.mkdir()
    t0 = time.monotonic()
    result = erase_with_hub(hub, command, "configs/campaigns/sd14-nudity.yaml", f"storage_path={tmp_path / 'runs'}")
    assert_one_line_error(result, "model 'CompVis/stable-diffusion-v1-4' is not in the local Hugging Face cache",
                          str(hub), "hf download CompVis/stable-diffusion-v1-4", "model_source: workers")
    assert time.monotonic() - t0 < 15 and result.stdout == ""
    assert not (tmp_path / "runs").exists()   # no driver ever started


def test_a_hub_model_in_the_local_cache_gets_past_the_model_check(tmp_path):
    """`erase plan` reads a cached hub id's configs from the cache only: here the fake model has no denoiser."""
    snapshot = tmp_path / "hub" / "models--CompVis--stable-diffusion-v1-4" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abc")
    (snapshot / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    result = erase_with_hub(tmp_path / "hub", "plan", "configs/campaigns/sd14-nudity.yaml")
    assert_one_line_error(result, "has no unet or transformer component")
    assert "Retrying" not in result.stderr
