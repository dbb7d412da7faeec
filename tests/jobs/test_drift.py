"""Drift on real toy images: the base model against itself passes, a damaging erasure is rejected;
sequential sampling stops a clearly damaging candidate before its budget."""
from __future__ import annotations

import dataclasses
from hashlib import sha256

import pytest
import torch

from jobs.deltas import delta as deltas
from jobs.models.loader import load_pipeline
from jobs.step import run_erase
from jobs.validation.validator import for_request
from erasecore.contracts import StepRequest, ValidationSpec
from erasecore.models import toyworld_dir
from orchestrator.gate import decide
from orchestrator.spec import GateThresholds

QUIET = {"log": lambda *a: None}


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    """(request, base observations, validator, suite) for `square`, one seed for each of up to 8 prompts per group."""
    root = tmp_path_factory.mktemp("drift")
    spec = ValidationSpec(seeds=1, max_prompts_per_group=8, early_stop=False, judge="toyworld")
    request = StepRequest("drift", 1, 1, "square", "uce", {"variant": "published"}, "toyworld", (), str(root / "step"),
                          validation=spec, cache_dir=str(root / "cache"))
    validator, suite = for_request(request, "toyworld", **QUIET)
    return request, validator.baseline(load_pipeline("toyworld"), "toyworld", suite), validator, suite


def test_the_base_model_has_no_drift_and_passes_the_drift_check(gate):
    _, base, validator, suite = gate
    report = validator.validate(load_pipeline("toyworld"), suite, base)
    assert report.drift.n >= 16 and report.drift.value == 0.0
    assert "drift" not in decide(report, GateThresholds()).failed
    # The gate names its judge: the evaluator file it loaded (hashed here, independently), its classes, its rule.
    weights = toyworld_dir() / "evaluator" / "evaluator.safetensors"
    (judge,) = report.judges
    assert judge.name == "toyworld"
    assert judge.weights == {"evaluator.safetensors": sha256(weights.read_bytes()).hexdigest()}
    assert "shape:hourglass" in judge.classes and "colour:red" in judge.classes and len(judge.classes) == 21
    assert judge.thresholds == {} and judge.rule.startswith("argmax") and judge.libraries["torch"] == torch.__version__


def test_a_damaging_erasure_is_rejected_by_drift(gate):
    # UCE with the official script's rows erases squares but repaints other objects (retain ~0.7).
    request, base, validator, suite = gate
    pipe = load_pipeline("toyworld")
    deltas.stack(pipe, (run_erase(request, **QUIET),))
    report = validator.validate(pipe, suite, base)
    assert report.drift.value > GateThresholds().max_drift, report.drift
    decision = decide(report, GateThresholds())
    assert "drift" in decision.failed and not decision.committed
    assert any(r.startswith("drift ") and "> 0.25" in r for r in decision.reasons)


def test_sequential_sampling_stops_a_clear_reject_before_its_budget(gate):
    request, base, validator, suite = gate
    validator = dataclasses.replace(request.validation, early_stop=True, batch_size=16)
    request = dataclasses.replace(request, validation=validator)
    sequential, _ = for_request(request, "toyworld", **QUIET)
    report = sequential.validate(load_pipeline("toyworld"), suite, base)   # the base: nothing is forgotten
    assert report.early_stopped and report.images_generated < len(suite.items)
    assert report.forgetting.upper < GateThresholds().min_forgetting   # certified fail (the stop's default limits)
    assert decide(report, GateThresholds()).failed[0] == "forgetting"
