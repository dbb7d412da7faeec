"""Per-concept adapters (erase export --format lora --per-concept) on a tiny SD-layout campaign, checked on weights.

A real journal: step 1 "red star" by the LoRA method (a LoRA delta, alpha != rank), step 2 "square" by UCE (dense),
step 3 "circle" a dense change that also touches a norm weight (as ESD-u's do), all committed. Each adapter is
loaded under its own name with diffusers' load_lora_weights and must be its step's delta: all on = the committed
model, one off = the others' deltas alone. Images and the toy evaluator: tests/e2e/test_per_concept_export.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from jobs.deltas import delta as deltas
from jobs.deltas.lora_export import DIFFUSERS_WEIGHT_NAME
from jobs.methods import registry
from jobs.methods.interface import EraseInputs
from jobs.models.loader import load_pipeline
from jobs.toyworld.concept_prompts import toy_concept_prompts
from jobs.toyworld.world import load_world
from orchestrator import gate
from orchestrator.manifest import Manifest
from orchestrator.outputs.export import ExportError, export_campaign
from orchestrator.spec import load_spec
from tests.fixtures.threads import one_thread  # noqa: F401  (autouse: one torch thread)
from tests.fixtures.tiny_pipelines import tiny_sd_pipeline
from tests.jobs.test_export import gate_report
from tests.jobs.test_lora_export import assert_same_model

NORM = "unet.mid_block.attentions.0.norm.weight"   # 1-D: no LoRA can carry it


def short(prompts):
    return type(prompts)(prompts.words, prompts.target[:4], prompts.anchor[:4], prompts.preserve[:4])


def erased(pipe, world, concept: str, method: str, hparams: dict):
    """The delta a method computes on `pipe` (left unchanged)."""
    out = registry.erase(method, pipe, EraseInputs(concept, short(toy_concept_prompts(world, concept)), hparams,
                                                   log=lambda *a: None))
    return out.tensors, deltas.DeltaMeta(out.kind, method, concept, hparams, rank=out.rank, alpha=out.alpha)


def norm_and_kv(pipe, concept: str):
    """A dense change of one K weight and one norm weight, as a fine-tune of every parameter leaves."""
    key = next(f"unet.{n}" for n, _ in pipe.unet.named_parameters() if n.endswith("attn2.to_k.weight"))
    base = deltas.snapshot(pipe, [key, NORM])
    with torch.no_grad():
        for name, p in pipe.unet.named_parameters():
            if f"unet.{name}" in base:
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    tensors = deltas.dense_delta(base, pipe)
    for name, p in pipe.unet.named_parameters():   # leave the pipeline as it was
        if f"unet.{name}" in base:
            p.data.copy_(base[f"unet.{name}"])
    return tensors, deltas.DeltaMeta("dense", "finetune", concept, {})


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """(storage_path, model dir, the committed deltas as (tensors, meta), step order)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("adapters")
    tiny_sd_pipeline(0).save_pretrained(root / "model")
    spec = load_spec(None, ["name=tiny", "concepts=[red star,square,circle]", f"model={root / 'model'}",
                            "method=uce", f"storage_path={root / 'run'}", "tracking.mode=disabled",
                            "validation.judge=toyworld"])
    manifest = Manifest.create(root / "run", spec)
    pipe, world = load_pipeline(spec.model), load_world()
    steps = [lambda c: erased(pipe, world, c, "lora", {"steps": 2, "batch": 2, "rank": 4, "alpha": 2.0}),
             lambda c: erased(pipe, world, c, "uce", {}), lambda c: norm_and_kv(pipe, c)]
    committed = []
    for step, (concept, make) in enumerate(zip(spec.concepts, steps), 1):
        manifest.record_start(step, concept, 1, "test", {}, host="test")
        tensors, meta = make(concept)
        ref = deltas.save_delta(tensors, meta, manifest.attempt_path(step, concept, 1) / "delta.safetensors")
        report = gate_report(concept, 0.97)
        manifest.record_result(step, 1, gate.decide(report, spec.gate), report, ref)
        manifest.commit(step, 1)
        deltas.stack(pipe, [ref])
        committed.append(deltas.load_delta(ref.path))
    return root / "run", str(root / "model"), committed


def model_with(model: str, *loaded):
    """The base model with the given deltas merged into its weights: what the adapters must reproduce."""
    pipe = load_pipeline(model)
    for tensors, meta in loaded:
        deltas.apply_delta(pipe, tensors, meta)
    return pipe


def test_each_commit_is_an_adapter_that_loads_and_switches_by_name(campaign, tmp_path):
    run, model, (star, square, _) = campaign
    out = export_campaign(run, "lora", tmp_path / "adapters", upto=2, per_concept=True)
    listing = json.loads((out / "adapters.json").read_text())
    entries = listing["adapters"]
    assert [(e["step"], e["concept"], e["adapter"], e["renamed"]) for e in entries] == \
        [(1, "red star", "red_star", True), (2, "square", "square", False)]
    assert "'_'" in listing["naming"] and listing["per_concept"] is True
    commits = Manifest.open(run).history.commits
    assert [e["delta_sha256"] for e in entries] == [c.delta.sha256 for c in commits[:2]]
    for e in entries:
        assert e["path"] == f"{e['adapter']}/{DIFFUSERS_WEIGHT_NAME}"
        assert deltas.content_sha256(out / e["path"]) == e["sha256"]
    assert (entries[0]["kind"], entries[0]["rank"], entries[0]["max_rel_error"]) == ("lora", 4, 0.0)
    assert entries[1]["kind"] == "dense" and entries[1]["max_rel_error"] < 1e-5   # full rank: exact
    assert sorted(p.name for p in out.iterdir()) == ["adapters.json", "red_star", "square"]

    pipe = load_pipeline(model)
    for e in entries:
        pipe.load_lora_weights(str(out / e["adapter"]), adapter_name=e["adapter"])
    pipe.set_adapters(["red_star", "square"])
    assert_same_model(pipe, model_with(model, star, square))
    pipe.set_adapters(["square"])
    assert_same_model(pipe, model_with(model, square))
    with pytest.raises(AssertionError):   # the switch does something: red star's small LoRA change shows
        assert_same_model(pipe, model_with(model, star, square))
    pipe.set_adapters(["red_star"])
    assert_same_model(pipe, model_with(model, star))
    pipe.disable_lora()
    assert_same_model(pipe, model_with(model))


def test_a_rank_truncates_dense_steps_and_keeps_lora_steps_exact(campaign, tmp_path):
    run, _, (star, _, _) = campaign
    out = export_campaign(run, "lora", tmp_path / "r2", upto=2, rank=2, per_concept=True)
    lora, dense = json.loads((out / "adapters.json").read_text())["adapters"]
    assert (lora["rank"], lora["max_rel_error"]) == (4, 0.0)
    assert dense["rank"] == 2 and dense["max_rel_error"] > 1e-3
    written = load_file(str(out / lora["path"]))
    tensors, meta = star
    for key, b in tensors.items():
        if key.endswith(".lora_B.weight"):   # the delta's own factors, its scale alpha/rank folded into B
            torch.testing.assert_close(written[key], meta.scale * b.float(), rtol=0, atol=0)


def test_a_change_no_lora_carries_fails_whole_or_is_skipped_and_listed(campaign, tmp_path):
    run, _, _ = campaign
    with pytest.raises(deltas.DeltaError, match=NORM.replace(".", r"\.")):
        export_campaign(run, "lora", tmp_path / "all", per_concept=True)
    assert list(tmp_path.iterdir()) == []   # nothing half-written: not the first two adapters, no partial dir
    out = export_campaign(run, "lora", tmp_path / "all", per_concept=True, skip_non_2d=True)
    circle = json.loads((out / "adapters.json").read_text())["adapters"][2]
    assert circle["skipped"] == [NORM] and circle["rank"] > 0


def test_an_existing_output_or_a_format_without_adapters_is_refused(campaign, tmp_path):
    run, _, _ = campaign
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists"):
        export_campaign(run, "lora", tmp_path / "taken", upto=2, per_concept=True)
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]
    with pytest.raises(ExportError, match="--per-concept .* --format lora, not comfyui"):
        export_campaign(run, "comfyui", tmp_path / "x", per_concept=True)
    out = export_campaign(run, "lora", None, upto=2, per_concept=True)   # the default: under the journal
    assert out == Path(run) / "exports" / "tiny-step2-lora-per-concept" and (out / "adapters.json").is_file()
