"""Every method runs on a random-weight SD-1.x-layout pipeline: the code paths a real SD model takes."""
import pytest
import torch

from jobs.deltas import delta as deltas
from jobs.training.concept_prompts import text_concept_prompts
from jobs.methods import registry
from orchestrator.core.catalog import METHOD_NAMES
from jobs.methods.interface import EraseInputs
from orchestrator.core.errors import MethodConfigError
from tests.fixtures.tiny_pipelines import tiny_sd_pipeline, unet_output

SHORT = {"uce": {}, "rece": {"rounds": 1}, "esd-x": {"steps": 2, "batch": 2}, "esd-u": {"steps": 2, "batch": 2}, "fmn": {"steps": 2, "batch": 2},
         "ca": {"steps": 2, "batch": 2}, "lora": {"steps": 2, "batch": 2}, "spm": {"steps": 2, "batch": 2}}


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return tiny_sd_pipeline(0)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_method_returns_a_delta_and_leaves_the_pipeline_alone(pipe, method):
    before = {n: p.detach().clone() for n, p in pipe.unet.named_parameters()}
    prompts = text_concept_prompts("star", preserve=("heart",))
    out = registry.erase(method, pipe, EraseInputs("star", prompts, SHORT[method], seed=0, log=lambda *a: None))
    after = dict(pipe.unet.named_parameters())
    assert set(after) == set(before) and all(torch.equal(after[n], before[n]) for n in before)
    assert out.tensors and all(k.startswith("unet.") for k in out.tensors)
    if method in ("uce", "rece", "ca", "fmn"):
        assert all(".attn2." in k for k in out.tensors)
    if method == "esd-u":
        assert not any(".attn2." in k for k in out.tensors)
    meta = deltas.DeltaMeta(kind=out.kind, method=method, concept="star", rank=out.rank, alpha=out.alpha)
    probe = unet_output(pipe)
    deltas.apply_delta(pipe, out.tensors, meta)
    changed = unet_output(pipe)
    deltas.remove_delta(pipe, out.tensors, meta)
    assert not torch.allclose(probe, changed)
    assert torch.allclose(unet_output(pipe), probe, atol=1e-5)


def test_unknown_hyperparameter_is_a_clear_error(pipe):
    with pytest.raises(MethodConfigError, match="no hyperparameter 'etaa'"):
        registry.erase("esd-x", pipe, EraseInputs("star", text_concept_prompts("star"), {"etaa": 2}))
