"""The shipped toy world: loads through the one loader, generates deterministically, is judged truthfully."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from jobs.models.loader import ModelLoadError, load_pipeline
from erasecore.models import toyworld_dir
from jobs.toyworld.evaluator import Evaluator
from jobs.toyworld.render import place_pair, place_single, render
from jobs.toyworld.world import ObjectSpec, load_world

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("toyworld")


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator.load(load_world(), toyworld_dir() / "evaluator")


def _draw(pipe, prompt, seed, steps=10):
    return pipe([prompt], num_inference_steps=steps, guidance_scale=5.0, height=32, width=32,
                generator=[torch.Generator().manual_seed(seed)], output_type="np").images[0]


def test_shipped_pipeline_is_a_stable_diffusion_pipeline_and_small():
    from diffusers import StableDiffusionPipeline

    p = StableDiffusionPipeline.from_pretrained(toyworld_dir() / "pipeline", safety_checker=None)
    assert p.unet.config.cross_attention_dim == p.text_encoder.config.hidden_size
    size = sum(f.stat().st_size for f in toyworld_dir().rglob("*") if f.is_file())
    assert size < 20e6


def test_plain_diffusers_loads_and_draws_the_shipped_pipeline():
    """As any diffusers user would: from_pretrained with no torch_dtype, outside the project's loader, then draw."""
    from diffusers import StableDiffusionPipeline

    p = StableDiffusionPipeline.from_pretrained(str(toyworld_dir() / "pipeline"), safety_checker=None,
                                                requires_safety_checker=False)
    assert {p.unet.dtype, p.vae.dtype, p.text_encoder.dtype} == {torch.float32}
    image = p("a red star", num_inference_steps=3, height=32, width=32, output_type="np",
              generator=torch.Generator().manual_seed(0)).images[0]
    assert image.shape == (32, 32, 3) and np.isfinite(image).all()


def test_generation_is_deterministic_for_a_seed(pipe):
    a, b = _draw(pipe, "a red triangle", 7), _draw(pipe, "a red triangle", 7)
    c = _draw(pipe, "a red triangle", 8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_evaluator_agrees_with_ground_truth_on_fresh_renders(evaluator):
    world = load_world()
    rng = np.random.default_rng(2024)
    specs = [world.all_specs()[i] for i in rng.integers(len(world.all_specs()), size=300)]
    images = np.stack([render(world, place_single(world, s, rng)) for s in specs])
    v = evaluator.judge(images)
    assert np.mean([p == s.shape for p, s in zip(v.top("shape"), specs)]) >= 0.95
    assert np.mean([p == s.colour for p, s in zip(v.top("colour"), specs)]) >= 0.95
    assert evaluator.judge(render(world, [])[None]).top("shape") == ["nothing"]


def test_evaluator_reads_pair_scenes_left_and_right(evaluator):
    world = load_world()
    rng = np.random.default_rng(5)
    left, right = ObjectSpec("heart", "yellow", "small", "solid"), ObjectSpec("square", "blue", "small", "solid")
    img = render(world, place_pair(world, left, right, rng))
    lv, rv = evaluator.judge_pairs(img[None])
    assert (lv.top("shape")[0], lv.top("colour")[0]) == ("heart", "yellow")
    assert (rv.top("shape")[0], rv.top("colour")[0]) == ("square", "blue")


def test_the_base_model_draws_what_it_is_asked(pipe, evaluator):
    prompts = ["a red triangle", "a blue circle", "a green star", "a yellow heart"]
    gens = [torch.Generator().manual_seed(s) for s in range(len(prompts) * 4)]
    images = pipe([p for p in prompts for _ in range(4)], num_inference_steps=20, guidance_scale=5.0,
                  height=32, width=32, generator=gens, output_type="np").images
    v = evaluator.judge(np.clip(np.round(images * 255), 0, 255).astype(np.uint8))
    want = [p.split()[-1] for p in prompts for _ in range(4)]
    assert np.mean([a == b for a, b in zip(v.top("shape"), want)]) >= 0.75


def test_a_missing_or_unreadable_model_is_one_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no such directory"):
        load_pipeline(str(tmp_path / "nope"))
    (tmp_path / "junk").mkdir()
    with pytest.raises(ModelLoadError, match="not a diffusers pipeline"):
        load_pipeline(str(tmp_path / "junk"))


def test_cli_rejects_an_unknown_word_in_one_line():
    r = subprocess.run([sys.executable, "-m", "launch.cli", "toyworld", "showcase", "a red car"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["error: unknown word 'car' in prompt 'a red car': the toy world's "
                                             "tokenizer only knows its own vocabulary"]


@pytest.mark.slow
def test_training_code_runs_a_few_steps(tmp_path):
    """A smoke build of every stage, so the training code cannot rot."""
    from jobs.toyworld import build

    build.main(["--scale", "0.002", "--out", str(tmp_path)])
    p = load_pipeline(str(tmp_path / "pipeline"))
    assert p([""], num_inference_steps=2, height=32, width=32, output_type="np").images.shape == (1, 32, 32, 3)
    Evaluator.load(load_world(), tmp_path / "evaluator")
