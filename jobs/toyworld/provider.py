"""The toy world as a judge's provider (jobs/validation/providers.py): its judge (the evaluator), its
suites (jobs/toyworld/suite.py, the final sweep's included), its views (the capability bench, the
attention maps' scene) and the erase step's prompts for a model that draws it. The judge catalog's
"toyworld" entry (erasecore/judges.py) names PROVIDER; nothing in jobs/validation/ imports this
package.
"""
from __future__ import annotations

from jobs.toyworld.capability import toy_bench
from jobs.toyworld.concept_prompts import toy_concept_prompts
from jobs.toyworld.evaluator import Evaluator
from jobs.toyworld.judge import ToyJudge
from jobs.toyworld.prompts import Slot, pair
from jobs.toyworld.suite import build_suite, build_sweep_suite
from jobs.toyworld.world import World, load_world
from jobs.validation.providers import Provider
from erasecore.models import toyworld_dir


def toy_judge(world: World) -> ToyJudge:
    return ToyJudge(world, Evaluator.load(world, toyworld_dir() / "evaluator"))


def toy_prompt(world: World, concept: str) -> tuple[str, str, str]:
    """(prompt, concept word, attribute word) on the toy world: the concept in red beside a blue object of
    another superclass, e.g. "a red star and a blue triangle"."""
    members = world.members(world.concept(concept))
    if not members:   # an attribute concept: its own word is the token to watch, on a plain pair
        return f"a {concept} circle and a blue square", concept, concept
    superclass = world.superclass_of(members[0])
    other = next(o for o in world.objects if world.superclass_of(o) != superclass)
    red, blue = world.values("colour")[0], world.values("colour")[1]
    prompt = pair(world, Slot(concept, colour=red), Slot(other, colour=blue))
    return prompt.text, world.words_for_object(concept)[0] if concept in world.objects else concept, \
        world.attribute_words["colour"][red][0]


class ToyProvider(Provider):
    """Every question a toy suite asks is the evaluator's: object, colour, size, material."""

    def judge(self, concept_set=None, model: str = "", device: str = "cpu", precision: str = "fp32") -> ToyJudge:
        return toy_judge(load_world())   # built from its own world, whatever concept set is named

    def gate(self, request, name: str):
        v = request.validation
        world = load_world()
        suite = build_sweep_suite(world, request.erased_before) if request.sweep else \
            build_suite(world, request.concept, request.erased_before, v.max_prompts_per_group, step=request.step,
                        cumulative_budget=v.cumulative_budget, sweep_every=v.sweep_every)
        return toy_judge(world), suite

    def capability_bench(self):
        return toy_bench(load_world())

    def attention_prompt(self, concept: str) -> tuple[str, str, str]:
        return toy_prompt(load_world(), concept)

    def concept_prompts(self, name: str, preserve: tuple[str, ...]):
        return toy_concept_prompts(load_world(), name, preserve)


PROVIDER = ToyProvider()
