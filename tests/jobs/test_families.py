"""Every model family (SDXL, SD3, Flux, Z-Image; SD is tests/jobs/test_methods_sd_layout.py) saved, loaded back through
jobs.models.load_pipeline, erased by each method that applies, and gated by the validator."""
import pytest
import torch

from jobs.deltas import delta as deltas
from jobs.toyworld.concept_prompts import toy_concept_prompts
from erasecore.contracts import StepRequest, ValidationSpec
from erasecore.catalog import why_not
from jobs.models.adapters import adapter, image_size
from jobs.methods import registry
from erasecore.catalog import METHOD_NAMES
from jobs.methods.interface import EraseInputs
from erasecore.errors import MethodConfigError
from jobs.models.targets import denoiser
from jobs.models.loader import load_pipeline
from jobs.toyworld.world import load_world
from tests.fixtures.tiny_pipelines import (denoiser_output, tiny_flux_pipeline, tiny_sd3_pipeline, tiny_sdxl_pipeline,
                                           tiny_zimage_pipeline)

# diffusers' EulerDiscreteScheduler (SDXL's sampler) trips a numpy 2 deprecation of its own.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

BUILDERS = {"sdxl": tiny_sdxl_pipeline, "sd3": tiny_sd3_pipeline, "flux": tiny_flux_pipeline,
            "zimage": tiny_zimage_pipeline}
SHORT = {"uce": {}, "speed": {}, "rece": {"rounds": 1}, "esd-x": {"steps": 2, "batch": 2}, "esd-u": {"steps": 2, "batch": 2},
         "fmn": {"steps": 2, "batch": 2}, "ca": {"steps": 2, "batch": 2}, "lora": {"steps": 2, "batch": 2},
         "spm": {"steps": 2, "batch": 2}, "mace": {"steps": 2, "batch": 2}}
CASES = [(f, m) for f in BUILDERS for m in METHOD_NAMES]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """family -> a directory holding the tiny pipeline, saved with save_pretrained."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("families")
    out = {}
    for family, build in BUILDERS.items():
        build(0).save_pretrained(root / family)
        out[family] = str(root / family)
    return out


@pytest.fixture(scope="module")
def pipes(saved):
    return {family: load_pipeline(path) for family, path in saved.items()}


@pytest.fixture(scope="module")
def prompts():
    cp = toy_concept_prompts(load_world(), "star")
    return type(cp)(cp.words, cp.target[:4], cp.anchor[:4], cp.preserve[:4])


def test_the_loader_brings_back_each_family(pipes):
    assert type(pipes["sdxl"]).__name__ == "StableDiffusionXLPipeline"
    assert type(pipes["sd3"]).__name__ == "StableDiffusion3Pipeline" and pipes["sd3"].text_encoder_3 is None
    assert type(pipes["flux"]).__name__ == "FluxPipeline" and type(pipes["flux"].tokenizer_2).__name__ == "T5Tokenizer"
    assert type(pipes["zimage"]).__name__ == "ZImagePipeline" and type(pipes["zimage"].tokenizer).__name__ == "Qwen2Tokenizer"
    assert {f: adapter(p).family for f, p in pipes.items()} == {f: f for f in BUILDERS}
    assert all(image_size(p) == 32 for p in pipes.values())


def test_a_reloaded_pipeline_predicts_as_the_one_saved(pipes):
    """Offline tokenizers and every weight come back through the loader: the same prediction, bit for bit."""
    for family, build in BUILDERS.items():
        assert torch.equal(denoiser_output(build(0)), denoiser_output(pipes[family])), family


def test_conditioning_carries_each_familys_extras_and_slices_like_a_tensor(pipes):
    from jobs.training.distributed import Shard

    xl = adapter(pipes["sdxl"]).encode(["a red star", "a blue heart"])
    assert xl.states.shape[-1] == 64 and xl.pooled.shape == (2, 32) and xl.time_ids.tolist()[0] == [32, 32, 0, 0, 32, 32]
    half = Shard(rank=1, world=2).take(xl)
    assert torch.equal(half.states, xl.states[1:]) and torch.equal(half.time_ids, xl.time_ids[1:])
    sd3 = adapter(pipes["sd3"]).encode(["a red star"])
    assert sd3.pooled.shape == (1, 64) and sd3.time_ids is None
    flux = adapter(pipes["flux"]).encode(["a red star", "a blue heart"])
    assert flux.states.shape == (2, 512, 32) and flux.pooled.shape == (2, 32)   # T5 at FluxPipeline's length
    z = adapter(pipes["zimage"]).encode(["a red star", "a blue heart and a green cross"])
    assert z.pooled is None and z.mask.sum(1).tolist()[0] < z.mask.sum(1).tolist()[1] == z.states.shape[1]
    assert torch.equal(Shard(rank=1, world=2).take(z).mask, z.mask[1:])


def test_concept_tokens_are_found_where_each_familys_states_hold_them(pipes):
    from jobs.models.text_embeddings import concept_positions

    for family in ("flux", "zimage"):
        fam = adapter(pipes[family])
        ids, tok = fam.token_ids(["a red star", "a star"])
        mask = concept_positions(pipes[family], ["a red star", "a star"], ("star",))
        assert mask.sum(1).tolist() == [1, 1], family
        assert ids.shape[1] == fam.encode(["a red star", "a star"]).states.shape[1], family
        assert tok.convert_ids_to_tokens(ids[mask].tolist()) == (["\u2581star"] * 2 if family == "flux" else ["\u0120star"] * 2)


def test_flux_packs_latents_and_shifts_noise_by_resolution(pipes):
    from jobs.models.adapters import resolution_shift

    pipe = pipes["flux"]
    fam = adapter(pipe)
    x0 = pipe("a red star", num_inference_steps=2, height=32, width=32, output_type="latent",
              generator=torch.Generator().manual_seed(0)).images
    assert x0.shape == fam.latent_shape(1) == (1, 16, 16)   # 8x8x4 latents in 2x2 patches
    x0 = torch.randn(256, 16, 16, generator=torch.Generator().manual_seed(0))
    xt, velocity, t = fam.noised(x0, torch.Generator().manual_seed(1))
    s = (t / 1000).view(-1, 1, 1)
    assert torch.allclose(xt, x0 + s * velocity, atol=1e-5)
    mu = resolution_shift(pipe.scheduler.config, 16)
    k = torch.arange(1, 1001) / 1000
    table = pipe.scheduler.time_shift(mu, 1.0, k)
    assert torch.isclose(table[None, :], s.view(-1, 1), atol=1e-6).any(1).all()


def test_zimage_prediction_is_the_velocity_its_pipeline_steps_with(pipes):
    """ZImagePipeline negates the transformer's output before the Euler step; the adapter returns that velocity."""
    pipe = pipes["zimage"]
    fam, net = adapter(pipe), pipe.transformer
    g = torch.Generator().manual_seed(0)
    xt, _, t = fam.noised(torch.randn(fam.latent_shape(2), generator=g), g)
    cond = fam.encode(["a red star", "a blue heart"])
    raw = net([x.unsqueeze(1) for x in xt], 1 - t / 1000, [cond.states[i][cond.mask[i]] for i in range(2)]).sample
    assert torch.equal(fam.predict(net, xt, t, cond), -torch.stack(raw).squeeze(2))


def test_sd3_noises_by_flow_matching(pipes):
    fam = adapter(pipes["sd3"])
    x0 = torch.randn(64, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    xt, velocity, t = fam.noised(x0, torch.Generator().manual_seed(1))
    s = (t / 1000).view(-1, 1, 1, 1)
    assert t.dtype.is_floating_point and 0 < t.min() and t.max() <= 1000
    assert torch.allclose(xt, x0 + s * velocity, atol=1e-5)   # (1 - s) x0 + s noise, velocity = noise - x0


def test_unet_noising_uses_the_training_schedule_whatever_the_sampler_did(pipes):
    """SDXL samples with Euler, whose add_noise looks t up in the last generation's steps: not used."""
    pipe = pipes["sdxl"]
    pipe(["a red star"], num_inference_steps=2, guidance_scale=1.0, output_type="latent")
    x0 = torch.randn(64, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    xt, noise, t = adapter(pipe).noised(x0, torch.Generator().manual_seed(1))
    ac = pipe.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert len(set(t.tolist())) > 32
    assert torch.allclose(xt, ac.sqrt() * x0 + (1 - ac).sqrt() * noise, atol=1e-5)


@pytest.mark.parametrize("family,method", CASES, ids=[f"{f}-{m}" for f, m in CASES])
def test_each_applicable_method_erases_each_family(pipes, prompts, family, method):
    pipe = pipes[family]
    inputs = EraseInputs("star", prompts, SHORT[method], seed=0, log=lambda *a: None)
    if why_not(method, family):
        with pytest.raises(MethodConfigError, match=f"does not apply to {family}"):
            registry.erase(method, pipe, inputs)
        return
    comp, net = denoiser(pipe)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    out = registry.erase(method, pipe, inputs)
    after = dict(net.named_parameters())
    assert set(after) == set(before) and all(torch.equal(after[n], before[n]) for n in before)
    assert out.tensors and all(k.startswith(f"{comp}.") for k in out.tensors)
    _check_targets(family, method, list(out.tensors))
    meta = deltas.DeltaMeta(kind=out.kind, method=method, concept="star", rank=out.rank, alpha=out.alpha)
    probe = denoiser_output(pipe)
    deltas.apply_delta(pipe, out.tensors, meta)
    changed = denoiser_output(pipe)
    deltas.remove_delta(pipe, out.tensors, meta)
    assert not torch.allclose(probe, changed)
    assert torch.allclose(denoiser_output(pipe), probe, atol=1e-5)


TEXT_FACING = {"sdxl": (".attn2.",),
               "sd3": (".add_q_proj.", ".add_k_proj.", ".add_v_proj.", ".to_add_out."),
               "flux": (".add_q_proj.", ".add_k_proj.", ".add_v_proj.", ".to_add_out."),
               "zimage": ("transformer.context_refiner.0.attention.to_",)}   # the tiny model has one refiner block
UCE_EDITS = {"flux": {"transformer.context_embedder.weight", "transformer.time_text_embed.text_embedder.linear_1.weight"},
             "zimage": {"transformer.cap_embedder.1.weight"}}


def _check_targets(family: str, method: str, keys: list[str]) -> None:
    """Each method touched the family's text-facing attention (or, for ESD-u, everything else)."""
    text_facing = TEXT_FACING[family]
    if family in UCE_EDITS and method == "uce":
        assert set(keys) == UCE_EDITS[family], keys
    elif method in ("uce", "rece", "mace", "ca", "fmn", "esd-x", "speed"):
        assert all(any(t in k for t in text_facing) for k in keys), keys
    if method == "esd-x" and family == "flux":   # the dual-stream blocks' text half only
        assert all(k.startswith("transformer.transformer_blocks.") for k in keys), keys
    if method == "ca" and family in ("sd3", "flux"):
        assert all(".add_k_proj." in k or ".add_v_proj." in k for k in keys), keys
    if method == "ca" and family == "zimage":
        assert all(".attention.to_k." in k or ".attention.to_v." in k for k in keys), keys
    if method == "lora":
        assert all(k.split(".")[-3] in ("to_q", "to_k", "to_v") for k in keys), keys
    if method == "esd-u":
        assert not any(any(t in k for t in text_facing) for k in keys)
        assert not any(k.split(".")[1] in ("add_embedding", "time_embedding", "time_text_embed", "t_embedder")
                       for k in keys)


@pytest.mark.parametrize("family", list(BUILDERS))
def test_one_small_gate_on_each_family(saved, pipes, family, tmp_path):
    """The validator generates the suite at the family's size and the toy evaluator judges it (judge: toyworld)."""
    from jobs.step import run_validation

    comp, net = denoiser(pipes[family])
    name, p = next((n, p) for n, p in net.named_parameters() if p.dim() == 2)
    meta = deltas.DeltaMeta(kind="dense", method="esd-x", concept="star")
    ref = deltas.save_delta({f"{comp}.{name}": torch.full_like(p, 0.05)}, meta, tmp_path / "delta.safetensors")
    spec = ValidationSpec(seeds=1, max_prompts_per_group=1, inference_steps=2, early_stop=False, judge="toyworld")
    request = StepRequest(campaign="fam", step=1, attempt=1, concept="star", method="esd-x", hparams={},
                          model=saved[family], parents=(), out_dir=str(tmp_path / "step"), validation=spec,
                          cache_dir=str(tmp_path / "cache"))
    report = run_validation(request, ref, log=lambda *a: None)
    assert report.concept == "star" and report.images_generated > 0 and report.target_acc.n > 0
    assert (tmp_path / "step" / "gate_report.json").is_file()


def test_a_step_whose_judge_was_not_settled_is_not_validated(saved, tmp_path):
    """A worker never guesses a judge: a request that skipped preflight is one ConfigError line."""
    from jobs.step import run_validation
    from erasecore.errors import ConfigError

    request = StepRequest(campaign="fam", step=1, attempt=1, concept="star", method="esd-x", hparams={},
                          model=saved["sd3"], parents=(), out_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="judge is 'auto'"):
        run_validation(request, None)
