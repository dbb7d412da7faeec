"""Frozen components in half precision (jobs/models/precision.py): text encoders and VAE in bf16, the
denoiser in fp32, on every family's tiny pipeline and the toy model. bf16 runs on the CPU, so the
seams (denoiser inputs, VAE encode/decode) are tested here exactly as a GPU step crosses them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jobs.methods import registry
from jobs.methods.interface import EraseInputs
from jobs.models.loader import load_pipeline
from jobs.models.precision import FROZEN, frozen_dtype, hold_frozen_in
from jobs.models.targets import denoiser
from jobs.training.concept_prompts import concept_prompts
from jobs.validation.judges import load_judge
from jobs.validation.suite import Suite
from jobs.validation.validator import BaselineCache, frozen_tag
from erasecore import catalog
from erasecore.concepts import load_concept_set
from erasecore.contracts import ValidationSpec
from tests.fixtures import tiny_pipelines as tiny
from tests.fixtures.noise_floor import FACTOR, round_through

FAMILIES = ("tiny_sd_pipeline", "tiny_sdxl_pipeline", "tiny_sd3_pipeline", "tiny_flux_pipeline",
            "tiny_zimage_pipeline")


def draw(pipe, seed: int = 0) -> np.ndarray:
    return pipe("a red star", num_inference_steps=3, height=32, width=32, output_type="np",
                generator=torch.Generator().manual_seed(seed)).images


def drawn_through_bf16_storage(family: str) -> np.ndarray:
    """draw() with the frozen parts' weights, inputs and outputs rounded to bf16 but fp32 arithmetic: what
    bf16's eps alone does to the image on this machine, the floor of the bf16-vs-fp32 comparison."""
    pipe = getattr(tiny, family)()
    round_through([getattr(pipe, n) for n in FROZEN if getattr(pipe, n, None) is not None], torch.bfloat16)
    return draw(pipe)


def test_auto_is_bf16_on_cuda_and_fp32_elsewhere():
    assert frozen_dtype("auto", "cuda:0") == torch.bfloat16 and frozen_dtype("auto", "cpu") == torch.float32
    assert frozen_dtype("fp16", "cpu") == torch.float16 and frozen_dtype("fp32", "cuda") == torch.float32


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_draws_with_frozen_parts_in_bf16(family):
    pipe = getattr(tiny, family)()
    before = draw(pipe)
    cast = hold_frozen_in(pipe, torch.bfloat16)
    assert "vae" in cast and "text_encoder" in cast
    assert all(getattr(pipe, n).dtype == torch.bfloat16 for n in cast)
    assert denoiser(pipe)[1].dtype == torch.float32
    after = draw(pipe)
    assert after.dtype == before.dtype and np.isfinite(after).all()
    floor = np.abs(drawn_through_bf16_storage(family) - before).mean()
    # bf16 rounding (the kernels' own roundings on top of the floor's), not another image (~100x the floor)
    assert 0 < np.abs(after - before).mean() <= FACTOR * floor, (np.abs(after - before).mean(), floor)


def test_fp32_changes_nothing():
    pipe = tiny.tiny_sd_pipeline()
    before = draw(pipe)
    assert hold_frozen_in(pipe, torch.float32) == []
    assert np.array_equal(draw(pipe), before) and frozen_tag(pipe) == ""


@pytest.fixture(scope="module")
def toy_bf16():
    return load_pipeline(frozen_precision="bf16")


def test_the_toy_model_loads_with_frozen_bf16_and_a_step_trains_through_the_seams(toy_bf16):
    """ESD-x reads text states from the bf16 encoder and trains the fp32 UNet: the delta is fp32 and finite."""
    assert toy_bf16.text_encoder.dtype == torch.bfloat16 and toy_bf16.unet.dtype == torch.float32
    hp = catalog.get("esd-x").resolve({"steps": 2, "batch": 2})
    out = registry.erase("esd-x", toy_bf16, EraseInputs("star", concept_prompts("star", (), "toyworld"), hp,
                                                        log=lambda *a: None))
    assert out.tensors and all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in out.tensors.values())


def test_half_images_are_cached_apart_from_fp32_ones(toy_bf16, tmp_path):
    """A baseline drawn through a bf16 VAE is another baseline; fp32 keys stay what they were."""
    cache, suite, spec = BaselineCache(tmp_path), Suite("star", ()), ValidationSpec()
    assert frozen_tag(toy_bf16) == "bfloat16"
    assert cache.key("toyworld", suite, spec, "j", "bfloat16") != cache.key("toyworld", suite, spec, "j")
    assert cache.key("toyworld", suite, spec, "j", "") == cache.key("toyworld", suite, spec, "j")


def test_the_clip_judge_in_bf16_agrees_with_fp32(tmp_path):
    clip_dir = tiny.save_tiny_clip(tmp_path / "clip")
    toy = load_concept_set("toyworld")
    images = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    full = load_judge("clip", toy, str(clip_dir)).posteriors(images)
    half_judge = load_judge("clip", toy, str(clip_dir), precision="bf16")
    assert half_judge.model.dtype == torch.bfloat16
    half = half_judge.posteriors(images)
    assert half.dtype == np.float64   # each level (the superclasses, the rest) a distribution of its own
    assert all(np.allclose(half[:, level].sum(1), 1.0) for level in half_judge.levels())
    floor_judge = load_judge("clip", toy, str(clip_dir))
    round_through([floor_judge.model], torch.bfloat16)   # bf16 storage, fp32 arithmetic: the floor
    floor = np.abs(floor_judge.posteriors(images) - full).max()
    assert np.abs(half - full).max() <= FACTOR * floor, (np.abs(half - full).max(), floor)
