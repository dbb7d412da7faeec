"""The CLIP judge on a tiny random CLIP saved to disk and loaded as a hub id would be (numbers meaningless,
path real): label posteriors, thresholds calibrated on the base model's images, a whole gate on the toy
model through the generic concept-set path, and a judge that is not on the machine refused before Ray."""
from __future__ import annotations

from hashlib import sha256
from importlib.metadata import version

import numpy as np
import pytest

from jobs.validation.concept_suite import build_concept_suite
from jobs.validation.judges import load_judge
from jobs.validation.observations import Observation
from erasecore.concepts import load_concept_set
from erasecore.errors import ConfigError
from orchestrator.preflight import preflight
from orchestrator.spec import load_spec
from tests.fixtures.tiny_pipelines import save_tiny_clip, toy_gate

TOY = load_concept_set("toyworld")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def test_posteriors_are_distributions_over_the_sets_labels_superclasses_apart(clip_dir):
    judge = load_judge("clip", TOY, str(clip_dir))
    images = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    probs = judge.posteriors(images)
    supers = [i for i, label in enumerate(judge.labels) if TOY.entry(label).kind == "superclass"]
    rest = [i for i in range(len(judge.labels)) if i not in supers]
    assert probs.shape == (3, len(judge.labels)) and {judge.labels[i] for i in supers} >= {"round", "polygon"}
    # "round" does not take a circle's probability: the superclasses and the rest are each one distribution
    assert np.allclose(probs[:, supers].sum(1), 1.0) and np.allclose(probs[:, rest].sum(1), 1.0)
    assert "star" in judge.labels and "red" not in judge.labels   # attributes are not labels


def test_thresholds_are_fitted_to_the_false_positive_target_on_the_base_images(clip_dir):
    judge = load_judge("clip", TOY, str(clip_dir))
    suite = build_concept_suite(TOY, "star", judge=judge, max_per_group=4)
    star, heart = judge.labels.index("star"), judge.labels.index("heart")
    items = {c: next(i for i, it in enumerate(suite.items) if it.concept == c) for c in ("star", "heart")}

    def posterior(high: int) -> tuple[float, ...]:
        p = np.full(len(judge.labels), 0.1 / (len(judge.labels) - 1))
        p[high] = 0.9
        return tuple(p)

    base = [Observation(items["star"], 0, True, posterior(star)), Observation(items["heart"], 0, True, posterior(heart))]
    judged = judge.calibrate(suite, base)
    # Fitted to the false-positive target: just above the star score of the image drawn for the heart.
    assert base[1].posterior[star] < judge.thresholds["star"] <= 0.9 and [o.hit for o in judged] == [True, True]
    assert judge.identity().calibration["star"]["threshold"] == judge.thresholds["star"]


def test_a_clip_judge_that_is_not_on_the_machine_is_refused_before_ray(tmp_path, clip_dir):
    base = ["name=c", "concepts=[star]", "validation.judge=clip", "concepts_from=toyworld",
            f"storage_path={tmp_path / 'runs'}"]
    with pytest.raises(ConfigError, match="the clip judge needs its weights"):
        preflight(load_spec(None, [*base, "model=someone/a-real-model"]))
    assert preflight(load_spec(None, base)).judge == "clip"   # the toy model: the toy world's own CLIP
    with pytest.raises(ConfigError, match="not in the Hugging Face cache"):
        preflight(load_spec(None, [*base, "validation.judge_model=someone/clip-nowhere"]))
    assert preflight(load_spec(None, [*base, f"validation.judge_model={clip_dir}"])).judge == "clip"


def test_a_toy_gate_runs_through_the_generic_path_with_a_clip_judge(tmp_path, clip_dir):
    report = toy_gate(tmp_path, "clip", clip_dir)
    assert report.target_acc.n > 0 and report.retain.n > 0 and "leakage" in report.unjudged
    (judge,) = report.judges   # the checkpoint it loaded, by the file's own hash; the thresholds it calibrated
    assert judge.name == "clip" and judge.source == str(clip_dir)
    assert judge.weights == {"model.safetensors": sha256((clip_dir / "model.safetensors").read_bytes()).hexdigest()}
    assert "star" in judge.classes and 0.0 < judge.thresholds["star"] < 1.0
    assert judge.libraries["transformers"] == version("transformers")
    again = toy_gate(tmp_path, "clip", clip_dir)
    assert again.retain == report.retain   # the second gate calibrates from the cached baseline: same thresholds
