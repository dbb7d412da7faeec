"""Export of Flux and Z-Image campaigns: a journal with a LoRA step and a UCE step committed on each tiny
pipeline, out as a diffusers LoRA (loaded with the pipeline's own load_lora_weights) and as a ComfyUI LoRA
(diffusers module names under "transformer.", as ComfyUI maps them for these families)."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from jobs.deltas import delta as deltas
from jobs.deltas.lora_export import read_kohya_lora
from jobs.methods import registry
from jobs.methods.interface import EraseInputs
from jobs.models.loader import load_pipeline
from jobs.toyworld.world import load_world
from jobs.toyworld.concept_prompts import toy_concept_prompts
from orchestrator import gate
from orchestrator.manifest import Manifest
from orchestrator.outputs.export import export_campaign
from orchestrator.spec import load_spec
from tests.fixtures.tiny_pipelines import denoiser_output, tiny_flux_pipeline, tiny_zimage_pipeline
from tests.jobs.test_export import gate_report

BUILDERS = {"flux": tiny_flux_pipeline, "zimage": tiny_zimage_pipeline}
STEPS = (("star", "lora", {"steps": 2, "batch": 2}), ("square", "uce", {}))


def short(prompts):
    return type(prompts)(prompts.words, prompts.target[:4], prompts.anchor[:4], prompts.preserve[:4])


@pytest.fixture(scope="module", params=list(BUILDERS))
def campaign(request, tmp_path_factory):
    """(family, storage_path, model dir, the committed model's prediction) with steps 1 (LoRA) and 2 (UCE) committed."""
    torch.set_num_threads(1)
    family = request.param
    root = tmp_path_factory.mktemp(f"{family}-campaign")
    BUILDERS[family](0).save_pretrained(root / "model")
    spec = load_spec(None, [f"name={family}", "concepts=[star,square]", f"model={root / 'model'}", "method=lora",
                            f"storage_path={root / 'run'}", "tracking.mode=disabled", "validation.judge=toyworld"])
    manifest = Manifest.create(root / "run", spec)
    pipe, world = load_pipeline(spec.model), load_world()
    for step, (concept, method, hparams) in enumerate(STEPS, 1):
        manifest.record_start(step, concept, 1, method, hparams, host="test")
        out = registry.erase(method, pipe, EraseInputs(concept, short(toy_concept_prompts(world, concept)), hparams,
                                                       log=lambda *a: None))
        meta = deltas.DeltaMeta(out.kind, method, concept, hparams, rank=out.rank, alpha=out.alpha)
        ref = deltas.save_delta(out.tensors, meta, manifest.attempt_path(step, concept, 1) / "delta.safetensors")
        report = gate_report(concept, 0.97)
        manifest.record_result(step, 1, gate.decide(report, spec.gate), report, ref)
        manifest.commit(step, 1)
        deltas.stack(pipe, [ref])
    return family, root / "run", str(root / "model"), denoiser_output(pipe)


def test_a_lora_export_loads_with_the_pipelines_own_loader_and_reproduces_the_committed_model(campaign, tmp_path):
    family, run, model, committed = campaign
    out = export_campaign(run, "lora", out=tmp_path / "lora")
    keys = load_file(str(out / "pytorch_lora_weights.safetensors"))
    assert all(k.startswith("transformer.") for k in keys)
    pipe = load_pipeline(model)
    base = denoiser_output(pipe)
    pipe.load_lora_weights(str(out))
    loaded = denoiser_output(pipe)
    assert not torch.allclose(loaded, base)
    torch.testing.assert_close(loaded, committed, rtol=0, atol=1e-4 * committed.abs().max().item())


def test_a_comfyui_export_names_modules_as_comfyui_maps_this_family_and_reads_back(campaign, tmp_path):
    family, run, model, committed = campaign
    path = export_campaign(run, "comfyui", out=tmp_path / "erase.safetensors")
    pipe = load_pipeline(model)
    linears = {f"transformer.{n}" for n, m in pipe.transformer.named_modules() if isinstance(m, torch.nn.Linear)}
    names = {k.rsplit(".", 2)[0] if k.endswith("weight") else k.rsplit(".", 1)[0] for k in load_file(str(path))}
    assert names and names <= linears
    expected = {"flux": "transformer.context_embedder", "zimage": "transformer.cap_embedder.1"}[family]
    assert expected in names   # the UCE step's edit of the text embedder
    tensors, meta = read_kohya_lora(path, pipe)
    deltas.apply_delta(pipe, tensors, meta)
    torch.testing.assert_close(denoiser_output(pipe), committed, rtol=0, atol=1e-4 * committed.abs().max().item())
