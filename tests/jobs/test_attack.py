"""The attack group (jobs/validation/attack.py) on the toy model: UCE's candidate no longer draws `square` from
its prompts, and the states regenerated through its own K/V bring the square back; with no edit the attack is
the plain prompt; a family without cross-attention is left out with the reason; 0 prompts turns it off."""
from __future__ import annotations

import dataclasses

import pytest

from jobs.deltas.delta import DeltaMeta, apply_delta
from jobs.methods import registry
from jobs.methods.interface import EraseInputs
from jobs.models.loader import load_pipeline
from jobs.toyworld.evaluator import Evaluator
from jobs.toyworld.world import load_world
from jobs.training.concept_prompts import concept_prompts
from jobs.validation.attack import AttackProbe
from jobs.toyworld.judge import ToyJudge
from jobs.toyworld.suite import build_suite
from jobs.validation.validator import generate
from erasecore import catalog
from erasecore.contracts import Estimate, GateReport, ValidationSpec
from erasecore.models import toyworld_dir
from tests.fixtures.tiny_pipelines import tiny_sd3_pipeline

SPEC = ValidationSpec(seeds=2, inference_steps=20, attack_prompts=8)
NONE = Estimate(0.0, 0.0, 1.0, 0)


def empty_report(concept: str) -> GateReport:
    return GateReport(concept, NONE, NONE, 0.0, {}, NONE, {}, NONE, 0.0, 0.0, {}, 0, False, 0.0)


@pytest.fixture(scope="module")
def toy():
    world = load_world()
    judge = ToyJudge(world, Evaluator.load(world, toyworld_dir() / "evaluator"))
    return world, judge, build_suite(world, "square")


def test_uce_erases_the_prompts_but_its_own_kv_regenerate_the_concept(toy):
    world, judge, suite = toy
    pipe = load_pipeline()
    probe = AttackProbe(suite, SPEC, judge, log=lambda *a: None)
    probe.capture(pipe)
    plain = probe.finish(pipe, empty_report("square")).attack
    assert plain.n == len(probe.keys()) >= 8 and plain.value >= 0.8     # no edit: the attack is the prompt
    out = registry.erase("uce", pipe, EraseInputs("square", concept_prompts("square", (), "toyworld"),
                                                  catalog.get("uce").resolve({}), log=lambda *a: None))
    apply_delta(pipe, out.tensors, DeltaMeta(kind=out.kind, method="uce", concept="square", config={}))
    keys = probe.keys()
    erased = sum(o.hit for o in judge.observe(suite, keys, generate(pipe, suite, keys, SPEC))) / len(keys)
    report = probe.finish(pipe, empty_report("square"))
    assert erased <= 0.2                        # the gate's own prompts: gone
    assert report.attack.value >= 0.6 and report.attack.lower > erased   # regenerated through the edit
    assert report.attack_seconds > 0 and "attack" not in report.unjudged


def test_families_without_cross_attention_and_a_switched_off_group_say_why(toy):
    _, judge, suite = toy
    probe = AttackProbe(suite, SPEC, judge)
    probe.capture(tiny_sd3_pipeline())
    report = probe.finish(None, empty_report("square"))
    assert report.attack is None and "joint attention" in report.unjudged["attack"]
    off = AttackProbe(suite, dataclasses.replace(SPEC, attack_prompts=0), judge)
    off.capture(load_pipeline())
    assert "off" in off.finish(None, empty_report("square")).unjudged["attack"]
