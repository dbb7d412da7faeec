"""The optimized attack (jobs/validation/attack_optimized.py) on the toy model, against UCE's candidate for `square`:
the soft prompt lowers the candidate's denoising loss on the base model's images below the plain prompt's; the
candidate's weights come out bit for bit as they went in; the same run twice gives the same estimate; off (0 steps)
or on a family it cannot reach, the report says why. Also: the new spec fields keep old campaigns' hashes and
old journals still decode."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from jobs.deltas.delta import DeltaMeta, apply_delta
from jobs.methods import registry
from jobs.methods.interface import EraseInputs
from jobs.models.loader import load_pipeline
from jobs.toyworld.evaluator import Evaluator
from jobs.toyworld.judge import ToyJudge
from jobs.toyworld.suite import build_suite
from jobs.toyworld.world import load_world
from jobs.training.concept_prompts import concept_prompts
from jobs.validation.attack_optimized import GROUP, OptimizedAttackProbe
from erasecore import catalog
from erasecore.codec import from_dict, to_dict
from erasecore.contracts import Estimate, GateReport, ValidationSpec
from erasecore.models import toyworld_dir
from orchestrator.spec import load_spec, spec_hash
from tests.fixtures.tiny_pipelines import tiny_sd3_pipeline

SPEC = ValidationSpec(seeds=1, inference_steps=8, attack_optimized_steps=15, attack_optimized_tokens=3,
                      attack_optimized_prompts=4)
NONE = Estimate(0.0, 0.0, 1.0, 0)


def empty_report(concept: str) -> GateReport:
    return GateReport(concept, NONE, NONE, 0.0, {}, NONE, {}, NONE, 0.0, 0.0, {}, 0, False, 0.0)


def weights(pipe) -> dict[str, torch.Tensor]:
    return {f"{c}.{n}": p.detach().clone() for c in ("unet", "text_encoder")
            for n, p in getattr(pipe, c).named_parameters()}


@pytest.fixture(scope="module")
def toy():
    world = load_world()
    judge = ToyJudge(world, Evaluator.load(world, toyworld_dir() / "evaluator"))
    return judge, build_suite(world, "square")


@pytest.fixture(scope="module")
def attacked(toy):
    """UCE's candidate attacked once: (pipe, probe, report, the weights before, their requires_grad flags)."""
    judge, suite = toy
    pipe = load_pipeline()
    probe = OptimizedAttackProbe(suite, SPEC, judge, log=lambda *a: None)
    probe.capture(pipe)                                  # the base model's images, before the edit
    out = registry.erase("uce", pipe, EraseInputs("square", concept_prompts("square", (), "toyworld"),
                                                  catalog.get("uce").resolve({}), log=lambda *a: None))
    apply_delta(pipe, out.tensors, DeltaMeta(kind=out.kind, method="uce", concept="square", config={}))
    before = weights(pipe)
    flags = [p.requires_grad for p in pipe.unet.parameters()]
    return pipe, probe, probe.finish(pipe, empty_report("square")), before, flags


def test_the_soft_prompt_lowers_the_candidates_loss_below_the_plain_prompts(attacked):
    _, probe, report, _, _ = attacked
    losses = probe.losses
    assert losses["attacked"] < losses["plain"] and losses["attacked"] < losses["initial"]
    est = report.attack_optimized
    assert est.n == len(probe.keys()) == 4 and est.lower <= est.value <= est.upper
    assert report.attack_optimized_seconds > 0 and GROUP not in report.unjudged


def test_the_candidates_weights_are_left_bit_for_bit(attacked):
    pipe, _, _, before, flags = attacked
    after = weights(pipe)
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert [p.requires_grad for p in pipe.unet.parameters()] == flags
    assert all(p.grad is None for p in pipe.unet.parameters())


def test_the_same_attack_twice_gives_the_same_estimate(attacked):
    pipe, probe, report, _, _ = attacked
    first = dict(probe.losses)
    again = probe.finish(pipe, empty_report("square"))
    assert again.attack_optimized == report.attack_optimized and probe.losses == first


def test_off_or_out_of_reach_the_report_says_why(toy):
    judge, suite = toy
    off = OptimizedAttackProbe(suite, dataclasses.replace(SPEC, attack_optimized_steps=0), judge)
    off.capture(load_pipeline())
    report = off.finish(None, empty_report("square"))
    assert report.attack_optimized is None and "is 0" in report.unjudged[GROUP]
    dit = OptimizedAttackProbe(suite, SPEC, judge)
    dit.capture(tiny_sd3_pipeline())
    report = dit.finish(None, empty_report("square"))
    assert report.attack_optimized is None and "StableDiffusion3Pipeline" in report.unjudged[GROUP]


def test_campaigns_that_leave_it_off_keep_their_hash_and_old_journals_decode():
    plain = load_spec(None, ["name=t", "concepts=[square]"])
    off = dataclasses.replace(plain, validation=dataclasses.replace(plain.validation, attack_optimized_tokens=9))
    on = dataclasses.replace(plain, validation=dataclasses.replace(plain.validation, attack_optimized_steps=50))
    assert spec_hash(off) == spec_hash(plain) != spec_hash(on)
    old = to_dict(empty_report("square"))
    for key in ("attack_optimized", "attack_optimized_seconds"):
        del old[key]
    assert from_dict(GateReport, old).attack_optimized is None
    spec = to_dict(ValidationSpec())
    for key in ("attack_optimized_steps", "attack_optimized_tokens", "attack_optimized_prompts"):
        del spec[key]
    assert from_dict(ValidationSpec, spec).attack_optimized_steps == 0
