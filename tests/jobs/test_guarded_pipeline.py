"""The guarded pipeline (jobs/serving/guarded.py) on the toy model, with a committed campaign's serving bundle
(star, then square, erased by UCE; tests/fixtures/guarded_campaign.py): pre-filter, controller, audit, log."""
from __future__ import annotations

import dataclasses

import pytest

from erasecore.audit_log import read_records
from erasecore.errors import ConfigError
from erasecore.models import toy_pipeline_dir
from erasecore.prompt_filter import PromptFilter
from erasecore.serving import read_guard_spec
from tests.fixtures.guarded_campaign import committed_toy_campaign, serving_bundle
from tests.fixtures.threads import one_thread  # noqa: F401  (autouse: one torch thread)

pytestmark = pytest.mark.skipif(not (toy_pipeline_dir() / "model_index.json").is_file(),
                                reason="toy world weights not built (python -m jobs.toyworld.build)")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return serving_bundle(committed_toy_campaign(tmp_path_factory.mktemp("guard") / "toy"))


@pytest.fixture(scope="module")
def pipe():
    from jobs.models.loader import load_pipeline

    return load_pipeline("toyworld")


def guard(pipe, bundle, tmp_path, **kw):
    from jobs.serving.guarded import GuardedPipeline

    return GuardedPipeline(pipe, bundle, log=tmp_path / "audit.jsonl", **kw)


def test_the_bundle_names_the_commits_and_the_gates_judge(bundle):
    spec = read_guard_spec(bundle)
    assert [(c.step, c.concept, c.adapter) for c in spec.concepts] == [(1, "star", "star"), (2, "square", "square")]
    assert all(c.judge is not None and c.judge.name == "toyworld" and c.judge.weights for c in spec.concepts)
    assert (spec.judge, spec.concepts_from, spec.model) == ("toyworld", "toyworld", "toyworld")


def test_an_erased_concept_is_blocked_and_a_neighbour_drawn_by_the_base_model(pipe, bundle, tmp_path):
    g = guard(pipe, bundle, tmp_path)
    for prompt, concept in (("a small red star", "star"), ("a big Box", "square"), ("a sqaure", "square")):
        r = g(prompt)
        assert (r.verdict, r.image, r.filtered.concepts) == ("blocked_prompt", None, (concept,)), prompt
    r = g("a large blue solid diamond")                  # square's near neighbour
    assert r.verdict == "allowed" and r.image.shape == (32, 32, 3) and r.record.adapters_active == ()
    assert [s.concept for s in r.audit] == ["star", "square"] and not any(s.seen for s in r.audit)
    records, torn = read_records(tmp_path / "audit.jsonl")
    assert not torn and [x["verdict"] for x in records] == ["blocked_prompt"] * 3 + ["allowed"]
    assert records[0]["judge"]["weights"] == read_guard_spec(bundle).concepts[0].judge.weights


def test_the_audit_log_is_appended_never_rewritten(pipe, bundle, tmp_path):
    g = guard(pipe, bundle, tmp_path)
    path = tmp_path / "audit.jsonl"
    g("a red star")
    first, inode = path.read_bytes(), path.stat().st_ino
    g2 = guard(pipe, bundle, tmp_path)                   # a second guard on the same log: appends too
    g2("a green heart")
    g("a yellow triangle", seed=3)
    assert path.read_bytes().startswith(first) and path.stat().st_ino == inode
    records, torn = read_records(path)
    assert not torn and len(records) == 3 and records[2]["seed"] == 3


def test_the_audit_withholds_an_image_the_filter_let_through(pipe, bundle, tmp_path):
    """With a filter that knows nothing, a star prompt reaches the base model (no adapter touched) and the
    campaign's judge sees the star: blocked_image under block, flagged (image kept) under flag."""
    for on_detect, verdict in (("block", "blocked_image"), ("flag", "flagged")):
        g = guard(pipe, bundle, tmp_path, on_detect=on_detect)
        g.filter = PromptFilter.build(g.audit.concept_set, ())
        r = g("a large red solid star")
        assert r.verdict == verdict and [s.concept for s in r.audit if s.seen] == ["star"]
        assert (r.image is None) == (verdict == "blocked_image")
        assert r.record.judge_scores["star"]["seen"] is True and r.record.judge_scores["star"]["score"] > 0.5


def test_the_controller_switches_the_touched_adapters_or_all(pipe, bundle, tmp_path):
    g = guard(pipe, bundle, tmp_path, on_detect="flag", negative=True)
    r = g("a large red solid star")
    assert r.verdict == "flagged" and r.record.adapters_active == ("star",) and r.record.negative_prompt == "star"
    assert not any(s.seen for s in r.audit)              # star's adapter on: the star is not drawn
    base = guard(pipe, bundle, tmp_path, on_detect="flag")
    base.filter = PromptFilter.build(base.audit.concept_set, ())
    assert base("a large red solid star").audit[0].seen   # the same prompt and seed without it: drawn
    everything = guard(pipe, bundle, tmp_path, policy="all")
    r = everything("a large blue solid diamond")
    assert r.verdict == "allowed" and r.record.adapters_active == ("star", "square")


def test_a_judge_other_than_the_gates_or_a_wrong_policy_is_one_line(pipe, bundle, tmp_path):
    from jobs.serving.guarded import Audit

    spec = read_guard_spec(bundle)
    other = dataclasses.replace(spec.concepts[0].judge, weights={"evaluator.safetensors": "0" * 64})
    forged = dataclasses.replace(spec, concepts=tuple(dataclasses.replace(c, judge=other) for c in spec.concepts))
    with pytest.raises(ConfigError, match="not the one the gates used"):
        Audit(forged)
    with pytest.raises(ConfigError, match="--policy"):
        guard(pipe, bundle, tmp_path, policy="some")
