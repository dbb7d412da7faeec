"""The toy world's own BLIP-VQA (jobs/toyworld/weights/vqa, trained by `python -m jobs.toyworld.train_vqa`) loaded
through the judge catalog as a campaign loads it, asked the judge's questions about fresh renders (a seed the
training never drew), half of them through the toy VAE as generated images are. Each test asks one yes and one
no question per image, so a judge that ignores the image (answering from the words alone) scores 0.5 in
expectation; each check needs the one-sided 99% Wilson lower bound of the agreement with the truth to clear
LOWER_BOUND, which that judge cannot reach by luck and a judge that sees the objects clears with room
(the measured accuracies are in train_vqa's docstring)."""
from __future__ import annotations

from hashlib import sha256

import numpy as np
import pytest

from erasecore.concepts import load_concept_set
from erasecore.models import toyworld_dir
from jobs.toyworld.train_vqa import dataset
from jobs.toyworld.world import load_world
from jobs.validation.judges import load_judge
from jobs.validation.judges.vqa import LEAKAGE, QUESTIONS
from jobs.validation.statistics import wilson

TOY = load_concept_set("toyworld")
WORLD = load_world()
FRESH_SEED = 20_260    # training drew from seed 0, the docstring's measurement from 10_000
SCENES = 160           # 80 single objects and 80 pair scenes
LOWER_BOUND = 0.75     # halfway from chance (0.5) to perfect agreement
CONFIDENCE = 0.98      # two-sided, so its lower end is a one-sided 99% bound


@pytest.fixture(scope="module")
def judge():
    return load_judge("vqa", TOY, str(toyworld_dir() / "vqa"))


@pytest.fixture(scope="module")
def fresh():
    rng = np.random.default_rng(FRESH_SEED)
    images, contents = dataset(WORLD, SCENES, rng)
    return images, contents, rng


def _agreement(judge, images, asked: list[tuple[int, str, bool]]) -> tuple[int, int]:
    """(questions answered as the truth says, questions asked)."""
    p = judge.yes_probability(images[[i for i, _, _ in asked]], [q for _, q, _ in asked])
    return sum((pi >= judge.threshold) == yes for pi, (_, _, yes) in zip(p, asked)), len(asked)


def _lower(k: int, n: int) -> float:
    return wilson(k, n, CONFIDENCE)[0]


def test_object_questions_tell_the_prompted_object_from_its_sibling(judge, fresh):
    images, contents, rng = fresh
    asked = []
    for i, content in enumerate(contents):
        if len(content) == 1:
            entry = TOY.entry(content[0].shape)
            sibling = entry.near[int(rng.integers(len(entry.near)))]
            asked += [(i, QUESTIONS["object"].format(entry.name), True),
                      (i, QUESTIONS["object"].format(sibling), False)]
    k, n = _agreement(judge, images, asked)
    assert _lower(k, n) > LOWER_BOUND, f"object questions: {k}/{n} agree with the truth"


def test_leakage_questions_tell_which_object_carries_the_colour(judge, fresh):
    images, contents, rng = fresh
    asked = []
    for i, content in enumerate(contents):
        if len(content) == 2 and content[0].colour != content[1].colour:
            other, target = (content[1], content[0]) if rng.random() < 0.5 else content
            asked += [(i, LEAKAGE.format(other=other.shape, attribute=other.colour), True),     # its own colour
                      (i, LEAKAGE.format(other=other.shape, attribute=target.colour), False)]  # the target's
    k, n = _agreement(judge, images, asked)
    assert _lower(k, n) > LOWER_BOUND, f"leakage questions: {k}/{n} agree with the truth"


def test_every_toy_concept_name_is_one_known_token(judge):
    unk = judge.tokenizer.unk_token_id
    for name in TOY.concepts:
        ids = judge.tokenizer(name, add_special_tokens=False).input_ids
        assert len(ids) == 1 and ids[0] != unk, name


def test_identity_names_the_shipped_weights(judge):
    weights = toyworld_dir() / "vqa" / "model.safetensors"
    assert judge.identity().weights == {"model.safetensors": sha256(weights.read_bytes()).hexdigest()}
    assert judge.identity().classes == ("yes", "no")


def test_a_toy_campaign_judged_by_vqa_gets_the_shipped_weights(tmp_path):
    from orchestrator.preflight import preflight, with_settled_validation
    from orchestrator.spec import load_spec

    spec = load_spec(None, ["name=c", "concepts=[star]", "validation.judge=vqa", "concepts_from=toyworld",
                            f"storage_path={tmp_path / 'runs'}"])
    validation = with_settled_validation(preflight(spec))
    assert validation.judge == "vqa" and validation.judge_model == str(toyworld_dir() / "vqa")
