"""Every model family (SDXL, SD3; SD is tests/jobs/test_methods_sd_layout.py) saved, loaded back through
jobs.models.load_pipeline, erased by each method that applies, and gated by the validator."""
import pytest
import torch

from jobs.deltas import delta as deltas
from jobs.training.concept_prompts import toy_concept_prompts
from orchestrator.core.contracts import StepRequest, ValidationSpec
from orchestrator.core.catalog import why_not
from jobs.models.adapters import adapter, image_size
from jobs.methods import registry
from orchestrator.core.catalog import METHOD_NAMES
from jobs.methods.interface import EraseInputs
from orchestrator.core.errors import MethodConfigError
from jobs.models.targets import denoiser
from jobs.models.loader import load_pipeline
from jobs.toyworld.world import load_world
from tests.fixtures.tiny_pipelines import denoiser_output, tiny_sd3_pipeline, tiny_sdxl_pipeline

# diffusers' EulerDiscreteScheduler (SDXL's sampler) trips a numpy 2 deprecation of its own.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

BUILDERS = {"sdxl": tiny_sdxl_pipeline, "sd3": tiny_sd3_pipeline}
SHORT = {"uce": {}, "rece": {"rounds": 1}, "esd-x": {"steps": 2, "batch": 2}, "esd-u": {"steps": 2, "batch": 2}, "fmn": {"steps": 2, "batch": 2},
         "ca": {"steps": 2, "batch": 2}, "lora": {"steps": 2, "batch": 2}, "spm": {"steps": 2, "batch": 2}, "mace": {"steps": 2, "batch": 2}}
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
    assert {f: adapter(p).family for f, p in pipes.items()} == {"sdxl": "sdxl", "sd3": "sd3"}
    assert all(image_size(p) == 32 for p in pipes.values())


def test_conditioning_carries_each_familys_extras_and_slices_like_a_tensor(pipes):
    from jobs.training.distributed import Shard

    xl = adapter(pipes["sdxl"]).encode(["a red star", "a blue heart"])
    assert xl.states.shape[-1] == 64 and xl.pooled.shape == (2, 32) and xl.time_ids.tolist()[0] == [32, 32, 0, 0, 32, 32]
    half = Shard(rank=1, world=2).take(xl)
    assert torch.equal(half.states, xl.states[1:]) and torch.equal(half.time_ids, xl.time_ids[1:])
    sd3 = adapter(pipes["sd3"]).encode(["a red star"])
    assert sd3.pooled.shape == (1, 64) and sd3.time_ids is None


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


def _check_targets(family: str, method: str, keys: list[str]) -> None:
    """Each method touched the family's text-facing attention (or, for ESD-u, everything else)."""
    text_facing = (".attn2.",) if family == "sdxl" else (".add_q_proj.", ".add_k_proj.", ".add_v_proj.", ".to_add_out.")
    if method in ("uce", "rece", "mace", "ca", "fmn", "esd-x"):
        assert all(any(t in k for t in text_facing) for k in keys), keys
    if method == "ca" and family == "sd3":
        assert all(".add_k_proj." in k or ".add_v_proj." in k for k in keys), keys
    if method == "esd-u":
        assert not any(any(t in k for t in text_facing) for k in keys)
        assert not any(k.split(".")[1] in ("add_embedding", "time_embedding", "time_text_embed") for k in keys)


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
    from orchestrator.core.errors import ConfigError

    request = StepRequest(campaign="fam", step=1, attempt=1, concept="star", method="esd-x", hparams={},
                          model=saved["sd3"], parents=(), out_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="judge is 'auto'"):
        run_validation(request, None)
