"""The VQA judge on a tiny random BLIP-VQA saved to disk and loaded as a hub id would be (numbers meaningless,
path real): P(yes) from the answer decoder, SEE's questions by kind and the leakage question a label judge
cannot ask, a whole toy gate through the generic path, and weights that are not on the machine refused."""
from __future__ import annotations

from hashlib import sha256

import numpy as np
import pytest

from jobs.validation.concept_suite import build_concept_suite
from jobs.validation.judges import load_judge
from erasecore.concepts import load_concept_set
from erasecore.errors import ConfigError, ModelLoadError
from orchestrator.preflight import preflight
from orchestrator.spec import load_spec
from tests.fixtures.tiny_pipelines import save_tiny_blip_vqa, save_tiny_clip, toy_gate

TOY = load_concept_set("toyworld")
IMAGES = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory):
    return save_tiny_blip_vqa(tmp_path_factory.mktemp("vqa") / "tiny-blip-vqa")


@pytest.fixture(scope="module")
def judge(vqa_dir):
    return load_judge("vqa", TOY, str(vqa_dir))


def test_yes_probability_is_the_decoders_choice_between_yes_and_no(judge):
    p = judge.yes_probability(IMAGES, ["is there a star in the picture?"] * 3)
    assert p.shape == (3,) and ((0 < p) & (p < 1)).all()
    other = judge.yes_probability(IMAGES, ["is the circle red?"] * 3)
    assert not np.allclose(p, other)               # the question reaches the answer
    one = judge.yes_probability(IMAGES[:1], ["is there a star in the picture?"])
    assert one[0] == pytest.approx(p[0], abs=1e-5)  # each image judged alone


def test_every_group_is_judged_and_leakage_asks_about_the_other_object(judge):
    suite = build_concept_suite(TOY, "star", ("heart",), judge=judge, max_per_group=4)
    assert "leakage" in suite.groups()
    assert all("no prompts" in why for why in suite.unjudged.values())   # left out for want of prompts only
    leak = next(i for i, it in enumerate(suite.items) if it.group == "leakage")
    it = suite.items[leak]
    assert judge.question(suite, leak) == f"is the {it.prompt.other} {it.prompt.attribute}?"
    assert it.prompt.other and it.prompt.other in it.prompt.text
    target = next(i for i, it in enumerate(suite.items) if it.group == "target")
    assert judge.question(suite, target) == "is there a star in the picture?"
    obs = judge.observe(suite, [(leak, 0), (target, 1)], IMAGES[:2])
    assert [(o.item, o.seed) for o in obs] == [(leak, 0), (target, 1)]
    assert all(o.hit == (o.posterior[0] >= 0.5) and sum(o.posterior) == pytest.approx(1) for o in obs)


def test_a_checkpoint_that_is_not_blip_vqa_is_one_clear_line(tmp_path):
    clip = save_tiny_clip(tmp_path / "clip")
    with pytest.raises(ModelLoadError, match="cannot load the VQA judge") as err:
        load_judge("vqa", TOY, str(clip))
    assert "\n" not in str(err.value)


def test_a_vqa_judge_that_is_not_on_the_machine_is_refused_before_ray(tmp_path, vqa_dir):
    base = ["name=c", "concepts=[star]", "validation.judge=vqa", "concepts_from=toyworld",
            f"storage_path={tmp_path / 'runs'}"]
    with pytest.raises(ConfigError, match="Salesforce/blip-vqa-base"):
        preflight(load_spec(None, [*base, "model=someone/a-real-model"]))
    assert preflight(load_spec(None, base)).judge == "vqa"   # the toy model: the toy world's own VQA
    with pytest.raises(ConfigError, match="not in the Hugging Face cache"):
        preflight(load_spec(None, [*base, "validation.judge_model=someone/blip-nowhere"]))
    assert preflight(load_spec(None, [*base, f"validation.judge_model={vqa_dir}"])).judge == "vqa"


def test_a_toy_gate_runs_through_the_generic_path_with_a_vqa_judge(tmp_path, vqa_dir):
    report = toy_gate(tmp_path, "vqa", vqa_dir)
    assert report.target_acc.n > 0 and report.retain.n > 0 and report.leakage.n > 0
    assert "leakage" not in report.unjudged
    (judge,) = report.judges
    assert judge.name == "vqa" and judge.classes == ("yes", "no") and judge.thresholds == {"yes": 0.5}
    assert judge.weights == {"model.safetensors": sha256((vqa_dir / "model.safetensors").read_bytes()).hexdigest()}
