"""Each method, in a short run on the shipped toy pipeline, lowers the target and keeps an unrelated concept."""
import numpy as np
import pytest
import torch

from jobs.deltas import delta as deltas
from jobs.toyworld.concept_prompts import toy_concept_prompts
from jobs.methods import registry
from erasecore.catalog import METHOD_NAMES
from jobs.methods.interface import EraseInputs
from jobs.models.loader import load_pipeline
from erasecore.models import toyworld_dir
from jobs.toyworld.evaluator import Evaluator
from jobs.toyworld.world import load_world

pytestmark = pytest.mark.e2e

TARGET, UNRELATED = "square", "heart"
SHORT = {"uce": {}, "rece": {}, "esd-x": {"steps": 60}, "esd-u": {"steps": 60}, "fmn": {"steps": 35}, "ca": {"steps": 60},
         "lora": {"steps": 80}, "spm": {"steps": 100, "lr": 3e-3}, "mace": {},
         "speed": {"erase_scale": 4.0}}   # square's neighbour diamond is protected: erase_scale 1 forgets 0.41
# FMN only re-steers attention away from the concept's tokens: it costs unrelated objects more. Measured
# with 8 seeds at seeds 0-2: heart lost 0.16-0.28 while square lost 0.41-0.69. The others stay within 0.25.
MAX_COLLATERAL = {"fmn": 0.35}
PROMPTS = {c: [f"a {col} {c}" for col in ("red", "green", "blue", "yellow")] for c in (TARGET, UNRELATED)}


@pytest.fixture(scope="module")
def world():
    torch.set_num_threads(2)
    return load_world()


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("toyworld")


@pytest.fixture(scope="module")
def evaluator(world):
    return Evaluator.load(world, toyworld_dir() / "evaluator")


def accuracy(pipe, evaluator, concept: str, seeds: int = 8) -> float:
    prompts = [p for p in PROMPTS[concept] for _ in range(seeds)]
    gens = [torch.Generator().manual_seed(1000 + i) for i in range(len(prompts))]
    images = pipe(prompts, num_inference_steps=15, guidance_scale=5.0, height=32, width=32, generator=gens,
                  output_type="np").images
    shapes = evaluator.judge(np.clip(np.round(images * 255), 0, 255).astype(np.uint8)).top("shape")
    return float(np.mean([s == concept for s in shapes]))


@pytest.fixture(scope="module")
def base_acc(pipe, evaluator):
    return {c: accuracy(pipe, evaluator, c) for c in (TARGET, UNRELATED)}


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_method_erases_the_target_and_keeps_an_unrelated_concept(world, pipe, evaluator, base_acc, method):
    assert base_acc[TARGET] >= 0.75, "the base model must draw the target for erasure to mean anything"
    prompts = toy_concept_prompts(world, TARGET)
    out = registry.erase(method, pipe, EraseInputs(TARGET, prompts, SHORT[method], seed=0, log=lambda *a: None))
    meta = deltas.DeltaMeta(kind=out.kind, method=method, concept=TARGET, rank=out.rank, alpha=out.alpha)
    deltas.apply_delta(pipe, out.tensors, meta)
    try:
        after = {c: accuracy(pipe, evaluator, c) for c in (TARGET, UNRELATED)}
    finally:
        deltas.remove_delta(pipe, out.tensors, meta)
    assert after[TARGET] <= base_acc[TARGET] - 0.25, (method, base_acc, after)
    assert after[UNRELATED] >= base_acc[UNRELATED] - MAX_COLLATERAL.get(method, 0.25), (method, base_acc, after)
