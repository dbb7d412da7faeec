"""Every method runs on a random-weight SD-1.x-layout pipeline: the code paths a real SD model takes."""
import pytest
import torch

from jobs.deltas import delta as deltas
from jobs.training.concept_prompts import text_concept_prompts
from jobs.methods import registry
from erasecore.catalog import METHOD_NAMES
from jobs.methods.interface import EraseInputs
from erasecore.errors import MethodConfigError
from tests.fixtures.tiny_pipelines import tiny_sd_pipeline, unet_output

SHORT = {"uce": {}, "speed": {}, "rece": {"rounds": 1}, "esd-x": {"steps": 2, "batch": 2}, "esd-u": {"steps": 2, "batch": 2}, "fmn": {"steps": 2, "batch": 2},
         "ca": {"steps": 2, "batch": 2}, "lora": {"steps": 2, "batch": 2}, "spm": {"steps": 2, "batch": 2}, "mace": {"steps": 2, "batch": 2}}


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
    if method in ("uce", "rece", "mace", "ca", "fmn", "speed"):
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


def test_uce_published_edits_one_state_per_prompt_toward_the_empty_prompt(pipe):
    from jobs.models.text_embeddings import encode
    from jobs.training import kv_edit

    prompts = text_concept_prompts("star", preserve=("heart",))
    rows = kv_edit.last_token_rows(pipe, prompts)
    states = encode(pipe, prompts.target)
    assert rows.erase.shape == (len(prompts.target), states.shape[-1]) and len(rows.keep) == 0
    # "a photo of a star": the last real token is "star" (position 5 after start-of-text).
    assert torch.equal(rows.erase[0], states[0, 5])
    assert torch.equal(rows.guide[0], encode(pipe, [""])[0, 0]) and torch.equal(rows.guide[0], rows.guide[-1])
    out = registry.erase("uce", pipe, EraseInputs("star", prompts, {"variant": "published"}, log=lambda *a: None))
    assert out.stats == {"erase_vectors": len(prompts.target), "preserve_vectors": 0}


def test_esd_published_points_at_the_empty_prompt(pipe, monkeypatch):
    from jobs.training import guided

    seen = []
    real = guided.run

    def spy(pipe_, inputs, *args, **kwargs):
        seen.append((inputs.prompts.anchor, dict(inputs.hparams)))
        return real(pipe_, inputs, *args, **kwargs)

    monkeypatch.setattr(guided, "run", spy)
    prompts = text_concept_prompts("star", preserve=("heart",))
    registry.erase("esd-x", pipe, EraseInputs("star", prompts, {"variant": "published", "steps": 1},
                                              log=lambda *a: None))
    anchors, hp = seen[0]
    assert anchors == ("",) * len(prompts.target)
    assert (hp["eta"], hp["preserve_weight"], hp["lr"], hp["batch"]) == (2.0, 0.0, 5e-5, 1)
