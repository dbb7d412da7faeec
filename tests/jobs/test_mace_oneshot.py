"""MACE's one-shot arm: given several concepts at once (concept_prompts.merged), it refines on all their rows,
trains one LoRA per concept and fuses them in one closed form; one concept is a progressive step."""
import pytest
import torch

from jobs.methods import registry
from jobs.methods.interface import EraseInputs
from jobs.models.text_embeddings import encode
from jobs.training.concept_prompts import merged, text_concept_prompts
from tests.fixtures.tiny_pipelines import tiny_sd_pipeline

FAST = {"steps": 2, "batch": 2}


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return tiny_sd_pipeline(0)


def _erase(pipe, concept, prompts):
    return registry.erase("mace", pipe, EraseInputs(concept, prompts, FAST, log=lambda *a: None))


def test_merged_prompts_keep_each_concept_and_flatten_when_merged_again():
    star, heart, moon = (text_concept_prompts(c) for c in ("star", "heart", "moon"))
    both = merged([star, heart])
    assert both.parts == (star, heart) and both.target == star.target + heart.target
    assert merged([both, moon]).parts == (star, heart, moon)
    assert star.parts == ()


def test_two_concepts_train_two_loras_and_fuse_them_where_one_concept_fuses_one(pipe):
    star = text_concept_prompts("star", preserve=("heart",))
    heart = text_concept_prompts("heart", preserve=("star",))
    one = _erase(pipe, "star", star)
    two = _erase(pipe, "star+heart", merged([star, heart]))
    assert one.stats["fused_concepts"] == 1.0 and two.stats["fused_concepts"] == 2.0
    assert two.stats["train_seconds"] > 0 and 0 < two.stats["mask_fraction"] < 1
    assert one.tensors.keys() == two.tensors.keys()
    assert any(not torch.allclose(one.tensors[k], two.tensors[k], atol=1e-6) for k in one.tensors)
    # The single-concept run keeps the heart (it preserves it); the one-shot erases it too: on the heart's
    # token states its K/V change is far larger.
    c_heart = encode(pipe, list(heart.target)).flatten(0, 1).double()
    moved = {name: sum(float((c_heart @ out.tensors[k].double().T).norm()) for k in out.tensors)
             for name, out in (("one", one), ("two", two))}
    assert moved["two"] > 2 * moved["one"], moved
