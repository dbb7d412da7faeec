"""Export: a real campaign journal with UCE deltas on the toy world, out as diffusers, LoRA and kohya.

Each export is loaded back the way its users load it (DiffusionPipeline.from_pretrained,
load_lora_weights) and must reproduce the committed model's UNet: base + stacked deltas.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from jobs.deltas import delta as deltas
from jobs.toyworld.concept_prompts import toy_concept_prompts
from erasecore.contracts import Estimate, GateReport
from jobs.methods import registry
from jobs.methods.interface import EraseInputs
from jobs.models.loader import load_pipeline
from erasecore.models import toy_pipeline_dir
from jobs.toyworld.world import load_world
from orchestrator import gate
from orchestrator.outputs.export import ExportError, export_campaign
from orchestrator.manifest import Manifest
from orchestrator.spec import load_spec
from tests.fixtures.tiny_pipelines import unet_output

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (toy_pipeline_dir() / "model_index.json").is_file(),
                                reason="toy world weights not built (python -m jobs.toyworld.build, "
                                       "or point ERASE_TOYWORLD_DIR at a trained world)")
# step -> attempts as (erase_scale, gate verdict): step 2's first attempt is rejected and must never ship.
PLAN = {1: [(1.0, "commit")], 2: [(0.3, "reject"), (1.0, "commit")]}


def gate_report(concept: str, forgetting: float) -> GateReport:
    good = Estimate(0.99, 0.95, 1.0, 96)
    return GateReport(concept=concept, forgetting=Estimate(forgetting, forgetting - 0.05, min(1.0, forgetting + 0.03), 96),
                      target_acc=Estimate(1 - forgetting, 0.0, 0.1, 96), base_target_acc=0.95, evasion={},
                      retain=good, retain_by_distance={"near": good, "far": good},
                      leakage=Estimate(0.0, 0.0, 0.04, 96), kl=0.01, kl_base_noise=0.01, cumulative={},
                      images_generated=192, early_stopped=False, seconds=1.0, drift=Estimate(0.0, 0.0, 0.04, 96))


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """A journal with steps 1 and 2 committed; returns (storage_path, probes of base/step1/step2)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("campaign")
    spec = load_spec(str(REPO / "configs/campaigns/toy.yaml"), [f"storage_path={root}", "tracking.mode=disabled"])
    manifest = Manifest.create(root, spec)
    pipe, world = load_pipeline(spec.model), load_world()
    probes = [unet_output(pipe)]
    for step, attempts in PLAN.items():
        concept = spec.concepts[step - 1]
        for attempt, (scale, verdict) in enumerate(attempts, 1):
            hparams = {"erase_scale": scale}
            manifest.record_start(step, concept, attempt, "uce", hparams, host="test")
            out = registry.erase("uce", pipe, EraseInputs(concept, toy_concept_prompts(world, concept), hparams,
                                                          log=lambda *a: None))
            meta = deltas.DeltaMeta(out.kind, "uce", concept, hparams, rank=out.rank, alpha=out.alpha)
            ref = deltas.save_delta(out.tensors, meta, manifest.attempt_path(step, concept, attempt) / "delta.safetensors")
            report = gate_report(concept, 0.97 if verdict == "commit" else 0.4)
            decision = gate.decide(report, spec.gate)
            assert decision.verdict == verdict, decision.reasons
            manifest.record_result(step, attempt, decision, report, ref)
            if decision.committed:
                manifest.commit(step, attempt)
                deltas.stack(pipe, [ref])   # the next step starts from the committed model
        probes.append(unet_output(pipe))
    return root, probes


@pytest.fixture(scope="module")
def base_pipe(campaign):
    return load_pipeline("toyworld")


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4) -> bool:
    return (a - b).abs().max().item() <= rtol * b.abs().max().item()


def test_fixture_deltas_change_the_model(campaign):
    _, (base, step1, step2) = campaign
    assert not close(base, step1, 1e-3) and not close(step1, step2, 1e-3)


def test_diffusers_export_is_the_merged_committed_model(campaign, tmp_path):
    root, probes = campaign
    out = export_campaign(root, "diffusers", tmp_path / "merged")
    assert (out / "model_index.json").is_file()
    assert torch.allclose(unet_output(load_pipeline(str(out))), probes[-1], atol=1e-5)
    info = json.loads((out / "export.json").read_text())
    committed = Manifest.open(root).history.commits
    assert [s["delta_sha256"] for s in info["steps"]] == [c.delta.sha256 for c in committed]
    assert [(s["step"], s["attempt"]) for s in info["steps"]] == [(1, 1), (2, 2)]   # never the rejected attempt
    with pytest.raises(ExportError, match="already exists"):
        export_campaign(root, "diffusers", out)


def test_lora_export_reproduces_the_committed_model(campaign, base_pipe, tmp_path):
    root, probes = campaign
    out = export_campaign(root, "lora", tmp_path / "lora")
    info = json.loads((out / "export.json").read_text())
    assert info["max_rel_error"] < 1e-5 and info["rank"] > 0   # dense deltas: full rank by default
    base_pipe.load_lora_weights(str(out))
    try:
        assert close(unet_output(base_pipe), probes[-1])
    finally:
        base_pipe.unload_lora_weights()
    assert torch.allclose(unet_output(base_pipe), probes[0], atol=1e-6)


def test_comfyui_export_upto_a_step(campaign, base_pipe, tmp_path):
    root, probes = campaign
    out = export_campaign(root, "comfyui", tmp_path, upto=1)
    assert out.name == "toy-step1.safetensors" and out.with_suffix(".export.json").is_file()
    _, header, _ = deltas.read_safetensors(out)
    assert header["ss_network_module"] == "networks.lora"
    base_pipe.load_lora_weights(str(out.parent), weight_name=out.name)
    try:
        assert close(unet_output(base_pipe), probes[1])
    finally:
        base_pipe.unload_lora_weights()


def test_low_rank_lora_is_an_approximation_that_says_so(campaign, tmp_path):
    root, _ = campaign
    out = export_campaign(root, "lora", tmp_path / "r1", rank=1)
    assert json.loads((out / "export.json").read_text())["max_rel_error"] > 1e-3


def test_export_errors_are_one_line(campaign, tmp_path):
    root, _ = campaign
    with pytest.raises(ExportError, match="unknown export format 'onnx'"):
        export_campaign(root, "onnx", tmp_path / "x")
    with pytest.raises(ExportError, match=">= 1"):
        export_campaign(root, "lora", tmp_path / "x", upto=0)
    empty = tmp_path / "empty"
    Manifest.create(empty, load_spec(str(REPO / "configs/campaigns/toy.yaml"), [f"storage_path={empty}"]))
    with pytest.raises(ExportError, match="no committed step"):
        export_campaign(empty, "lora", tmp_path / "y")
