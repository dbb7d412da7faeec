"""`erase export --format lora --per-concept` on a real committed toy campaign (star, then square, by UCE): each
adapter loaded into the toy diffusers pipeline under its concept's name, switched, and judged on images.

Every tolerance is measured here, in this run, on the same prompts and latents:
- rounding: |merged committed model in fp32 - the same in fp64|, what fp32 alone does to these images here;
- the adapters' own error: their max_rel_error (adapters.json) times the images' range (1);
- floor: |all adapters on - merged committed model|, what the LoRA path costs (same model, summed another order).
All on must stay within FACTOR x rounding + the adapters' own error; switching concept k off must move each of
k's images past the floor and that allowance. Pixels cannot show the rest: a UCE edit moves other prompts' images
too (star off moves square's images by 10 of 255 against star's 16: benches/adapters.py), so that the other
concepts stay erased is checked by the toy evaluator: their drawn rate stays inside the all-on rate's Wilson
interval, while concept k's own comes back above it.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from erasecore.models import toy_pipeline_dir
from tests.e2e.cli_runner import assert_one_line_error, erase
from tests.e2e.test_cli_integrity import finished  # noqa: F401  the committed toy campaign, built once per module

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not (toy_pipeline_dir() / "model_index.json").is_file(),
                                 reason="toy world weights not built (python -m jobs.toyworld.build)")]

CONCEPTS = ("star", "square")   # what the campaign commits, in step order
PROMPTS = 3                     # of each concept's gate target prompts
SEEDS = (0, 1)
STEPS = 10                      # the pipeline draws the toy objects at 10 steps; the gate uses 20


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """This module on one torch thread: on a busy 2-core machine two threads spin against each other (the images
    took 3 min instead of 10 s). Autouse, so the campaign fixture runs under it too."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def exported(finished, tmp_path_factory) -> Path:  # noqa: F811
    """The adapters written by the CLI, in this process."""
    from launch.cli import main

    out = tmp_path_factory.mktemp("adapters") / "toy"
    assert main(["export", str(finished), "--format", "lora", "--per-concept", "--out", str(out)]) == 0
    return out


def target_prompts(world, concept: str) -> list[str]:
    from jobs.toyworld.suite import build_suite

    return [i.prompt.text for i in build_suite(world, concept).items if i.group == "target"][:PROMPTS]


def draw(pipe, prompts: list[str]) -> np.ndarray:
    """Float images in [0, 1] of each prompt x seed, from fixed fp32 latents (the same for every pipeline)."""
    import torch

    from jobs.validation.validator import noise_seed

    shape = (1, pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size)
    texts = [p for p in prompts for _ in SEEDS]
    latents = torch.cat([torch.randn(shape, generator=torch.Generator().manual_seed(noise_seed(p, s)))
                         for p in prompts for s in SEEDS])
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return pipe(texts, latents=latents, num_inference_steps=STEPS, guidance_scale=5.0, height=size, width=size,
                output_type="np").images.astype(np.float64)


@pytest.fixture(scope="module")
def images(finished, exported):  # noqa: F811
    """Images of every concept's prompts (star's, then square's) under each model, and the adapters' listing."""
    from jobs.deltas import delta as deltas
    from jobs.models.loader import load_pipeline
    from jobs.toyworld.world import load_world
    from orchestrator.outputs.export import plan_export
    from tests.fixtures.noise_floor import in_float64

    world, listing = load_world(), json.loads((exported / "adapters.json").read_text())
    prompts = [p for c in CONCEPTS for p in target_prompts(world, c)]
    refs = plan_export(finished).refs
    merged = load_pipeline("toyworld")
    deltas.stack(merged, refs)
    shots = {"merged": draw(merged, prompts)}
    in_float64(merged.unet, merged.text_encoder, merged.vae)
    shots["merged fp64"] = draw(merged, prompts[::PROMPTS])   # rounding's size: one prompt of each concept is enough
    pipe = load_pipeline("toyworld")
    for entry in listing["adapters"]:
        pipe.load_lora_weights(str(exported / entry["adapter"]), adapter_name=entry["adapter"])
    names = [e["adapter"] for e in listing["adapters"]]
    pipe.set_adapters(names)
    shots["on"] = draw(pipe, prompts)
    for name in names:
        pipe.set_adapters([n for n in names if n != name])
        shots[f"{name} off"] = draw(pipe, prompts)
    return shots, listing, world


def rows(concept: str) -> slice:
    """The images of `concept`'s prompts."""
    k = CONCEPTS.index(concept) * PROMPTS * len(SEEDS)
    return slice(k, k + PROMPTS * len(SEEDS))


def allowed_error(shots, listing) -> float:
    """FACTOR x fp32's rounding of these images here, plus the factorisation's relative error times the images'
    range [0, 1] (a change of a weight by a share e of the delta moves an image by about e of the delta's effect)."""
    from tests.fixtures.noise_floor import FACTOR

    first = np.concatenate([shots["merged"][rows(c)][:len(SEEDS)] for c in CONCEPTS])   # the fp64 run's prompts
    rounding = np.abs(first - shots["merged fp64"]).max()
    return FACTOR * rounding + max(e["max_rel_error"] for e in listing["adapters"])


@functools.cache
def evaluator():
    from erasecore.models import toyworld_dir
    from jobs.toyworld.evaluator import Evaluator
    from jobs.toyworld.world import load_world

    return Evaluator.load(load_world(), toyworld_dir() / "evaluator")


def drawn(world, concept: str, shots: np.ndarray) -> int:
    """How many of `shots` the toy evaluator sees `concept` in."""
    uint8 = np.clip(np.round(shots * 255), 0, 255).astype(np.uint8)
    members = world.members(world.concept(concept))
    return sum(s in members for s in evaluator().judge(uint8).top("shape"))


def test_the_cli_writes_one_named_adapter_per_committed_concept_in_commit_order(finished, exported):  # noqa: F811
    from jobs.deltas.delta import content_sha256
    from orchestrator.manifest import Manifest

    listing = json.loads((exported / "adapters.json").read_text())
    commits = Manifest.open(finished).history.commits
    assert [(e["step"], e["concept"], e["adapter"]) for e in listing["adapters"]] == \
        [(c.step, c.concept, c.concept) for c in commits] == [(1, "star", "star"), (2, "square", "square")]
    for e in listing["adapters"]:
        assert (exported / e["concept"] / "pytorch_lora_weights.safetensors").is_file()
        assert content_sha256(exported / e["path"]) == e["sha256"]
        assert e["kind"] == "dense" and e["max_rel_error"] < 1e-5   # UCE: dense, full rank by default


def test_per_concept_with_a_format_that_has_no_adapters_is_one_error_line(finished, tmp_path):  # noqa: F811
    result = erase("export", str(finished), "--format", "comfyui", "--per-concept", "--out", str(tmp_path / "x"))
    assert_one_line_error(result, "--per-concept", "--format lora", "comfyui")
    assert not (tmp_path / "x").exists()


def test_all_adapters_on_is_the_committed_model_within_the_factorisations_own_error(images):
    shots, listing, _ = images
    floor, allowed = np.abs(shots["on"] - shots["merged"]).max(), allowed_error(shots, listing)
    assert floor <= allowed, f"all adapters on vs merged: {floor:.3g} > allowed {allowed:.3g}"


@pytest.mark.parametrize("concept", CONCEPTS)
def test_switching_a_concept_off_moves_its_own_images_beyond_the_floor(images, concept):
    shots, listing, _ = images
    floor = max(np.abs(shots["on"] - shots["merged"]).max(), allowed_error(shots, listing))
    moved = np.abs(shots[f"{concept} off"] - shots["on"])[rows(concept)].mean(axis=(1, 2, 3))
    assert moved.min() > floor, f"{concept} off: its images moved {moved.round(4)} (floor {floor:.3g})"


@pytest.mark.parametrize("concept", CONCEPTS)
def test_switching_a_concept_off_brings_it_back_and_keeps_the_others_erased(images, concept):
    """Drawn rates: concept k's rises past the all-on rate's Wilson interval, every other's stays inside it.
    The measured floor for a rate, |all on - merged|, is added to the margin (0 when the LoRA path flips no verdict)."""
    from jobs.validation.statistics import wilson

    shots, _, world = images
    n = PROMPTS * len(SEEDS)
    for c in CONCEPTS:
        on, off = drawn(world, c, shots["on"][rows(c)]), drawn(world, c, shots[f"{concept} off"][rows(c)])
        floor = abs(on - drawn(world, c, shots["merged"][rows(c)])) / n
        upper = wilson(on, n)[1]
        if c == concept:
            assert off / n > upper + floor, f"{concept} off: {c} drawn {off}/{n}, all on {on}/{n} (upper {upper:.2f})"
        else:
            assert off / n <= upper + floor, f"{concept} off: {c} drawn {off}/{n}, all on {on}/{n} (upper {upper:.2f})"
