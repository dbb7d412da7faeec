"""Judges other than the toy evaluator, run for real: the NudeNet detector shipped in the `nudenet` wheel.

No explicit material is kept in the repository: the detector sees synthetic and generated images.
The nudity concept set's whole validation path runs on a tiny random-weight SD pipeline saved to disk
and loaded as a hub id would be (numbers meaningless, path real).
"""
from __future__ import annotations

import base64
from hashlib import sha256
from importlib.metadata import files, version
from pathlib import Path

import nudenet
import numpy as np
import pytest
import torch

from jobs.deltas import delta as deltas
from jobs.models.targets import denoiser
from jobs.validation.concept_suite import build_concept_suite
from jobs.validation.judges import load_judge
from jobs.validation.judges.nudenet import NUDITY_CLASSES
from erasecore.concepts import load_concept_set
from erasecore.contracts import StepRequest, ValidationSpec
from erasecore.errors import ConfigError
from orchestrator.gate import decide
from orchestrator.spec import GateThresholds
from tests.fixtures.tiny_pipelines import tiny_sd_pipeline

NUDITY = load_concept_set("nudity")


@pytest.fixture(scope="module")
def judge():
    return load_judge("nudenet", NUDITY)


def test_the_detector_sees_nothing_in_blank_or_noise_images(judge):
    rng = np.random.default_rng(0)
    for image in (np.zeros((64, 64, 3), np.uint8), rng.integers(0, 255, (320, 320, 3), dtype=np.uint8)):
        assert judge.presence(image, "nudity") == 0.0 and judge.presence(image, "person") == 0.0


def test_the_suite_leaves_out_what_nudenet_cannot_answer_and_says_why(judge):
    suite = build_concept_suite(NUDITY, "nude person", judge=judge)
    groups = {i.group for i in suite.items}
    assert {"target", "evasion:paraphrase", "retain:near", "retain:far"} <= groups
    assert "leakage" not in groups and "not where an attribute landed" in suite.unjudged["leakage"]
    assert judge.why_not("target", load_concept_set("artist-styles").entry("Claude Monet")) is not None


def test_the_judges_identity_is_the_onnx_file_the_wheel_ships(judge):
    identity = judge.identity()
    onnx = Path(nudenet.__file__).parent / "320n.onnx"
    assert identity.weights == {"320n.onnx": sha256(onnx.read_bytes()).hexdigest()}
    shipped = next(f for f in files("nudenet") if f.name == "320n.onnx")   # the wheel's own RECORD of the file
    assert shipped.hash.mode == "sha256"
    assert identity.weights["320n.onnx"] == base64.urlsafe_b64decode(shipped.hash.value + "==").hex()
    assert identity.classes == NUDITY_CLASSES and identity.thresholds == {"nudity": 0.6, "person": 0.6}
    assert identity.libraries["nudenet"] == version("nudenet") and identity.libraries["onnxruntime"] == version(
        "onnxruntime")


def test_an_unknown_judge_is_one_config_error():
    with pytest.raises(ConfigError, match="'florence' is not in this build"):
        load_judge("florence", NUDITY)


def test_the_nudity_sets_gate_runs_end_to_end_on_a_saved_pipeline(tmp_path):
    from jobs.step import run_validation

    pipe = tiny_sd_pipeline(0)
    pipe.save_pretrained(tmp_path / "sd")
    comp, net = denoiser(pipe)
    name, p = next((n, p) for n, p in net.named_parameters() if p.dim() == 2)
    meta = deltas.DeltaMeta(kind="dense", method="esd-x", concept="nude person")
    ref = deltas.save_delta({f"{comp}.{name}": torch.full_like(p, 0.05)}, meta, tmp_path / "delta.safetensors")
    spec = ValidationSpec(seeds=1, max_prompts_per_group=3, inference_steps=2, early_stop=False, judge="nudenet")
    request = StepRequest(campaign="nude", step=1, attempt=1, concept="nude person", method="esd-x", hparams={},
                          model=str(tmp_path / "sd"), parents=(), out_dir=str(tmp_path / "step"), validation=spec,
                          cache_dir=str(tmp_path / "cache"), concepts_from="nudity")
    report = run_validation(request, ref, log=lambda *a: None)
    assert report.target_acc.n > 0 and report.retain.n > 0 and report.images_generated > 0
    assert "leakage" in report.unjudged and report.leakage.n == 0
    assert (tmp_path / "step" / "gate_report.json").is_file()
    decision = decide(report, GateThresholds())
    assert any(r.startswith("leakage not judged: NudeNet") for r in decision.reasons)
    assert [j.name for j in report.judges] == ["nudenet"] and "320n.onnx" in report.judges[0].weights
