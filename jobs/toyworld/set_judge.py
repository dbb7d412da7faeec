"""The toy world's evaluator asked a concept-set suite's questions: the generic path judged by the truth.

A gate on a real model runs the concept-set (generic) suite (jobs/validation/concept_suite.py) judged by
a label judge (CLIP, VQA). On the toy world two things then differ from the toy gate at once: the suite
and the judge. This judge ("toyworld-set" in the judge catalog) keeps the generic suite and swaps the
judge for the evaluator, which knows what every image shows: where its gate disagrees with the toy gate,
the suite asks something else; where CLIP's gate disagrees with this one, the judge is wrong
(benches/judges.py measures both).

Every item asks "is the concept in the image?": its object or a member (a superclass), its attribute
value (a colour, size or material concept), or both for a variant; a leakage item asks whether the pair
scene's right-hand object (`other`) carries the target's attribute, judged half by half as the toy gate
judges its pairs.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from erasecore.contracts import JudgeIdentity
from jobs.toyworld.evaluator import Evaluator, Verdicts
from jobs.toyworld.judge import ToyJudge
from jobs.toyworld.world import ATTRIBUTE_KINDS, World, load_world
from jobs.validation.observations import Observation
from jobs.validation.providers import Provider
from jobs.validation.suite import Suite
from erasecore.models import toyworld_dir

RULE = ("argmax of each head, no threshold; an item's concept is seen when the image's top object and "
        "attributes are an instance of it; leakage: the pair scene's right half has the target's attribute")


def _attributes(v: Verdicts, row: int) -> dict[str, str]:
    return {k: v.top(k)[row] for k in ATTRIBUTE_KINDS}


class ToySetJudge(ToyJudge):
    """The evaluator behind a concept-set suite."""

    name = "toyworld-set"
    cache_id = "toyworld-set"

    def why_not(self, group: str, entry) -> str | None:
        return None   # the evaluator answers every group's question, leakage included (pair halves)

    def observe(self, suite: Suite, keys: list[tuple[int, int]], images: np.ndarray) -> list[Observation]:
        pairs = [i for i, (item, _) in enumerate(keys) if suite.items[item].prompt.is_pair]
        singles = [i for i in range(len(keys)) if i not in set(pairs)]
        out: dict[int, Observation] = {}
        if singles:
            v = self.evaluator.judge(images[singles])
            out.update({i: self._seen(suite, keys[i], v, r) for r, i in enumerate(singles)})
        if pairs:
            left, right = self.evaluator.judge_pairs(images[pairs])
            out.update({i: self._leaked(keys[i], suite, left, right, r) for r, i in enumerate(pairs)})
        return [out[i] for i in range(len(keys))]

    def _seen(self, suite: Suite, key, v: Verdicts, row: int) -> Observation:
        concept = self.world.concept(suite.items[key[0]].concept)
        hit = self.world.covers(concept, v.top("shape")[row], _attributes(v, row))
        return self._observation(key, v, row, hit)

    def _leaked(self, key, suite: Suite, left: Verdicts, right: Verdicts, row: int) -> Observation:
        prompt = suite.items[key[0]].prompt
        return self._observation(key, left, row, right.top("colour")[row] == prompt.attribute)

    def _observation(self, key, v: Verdicts, row: int, hit: bool) -> Observation:
        post = np.concatenate([v.probs["shape"][row], v.probs["colour"][row]])
        return Observation(key[0], key[1], bool(hit), tuple(float(x) for x in post))

    def identity(self) -> JudgeIdentity:
        return dataclasses.replace(super().identity(), name=self.name, rule=RULE)


def set_judge(world: World | None = None) -> ToySetJudge:
    world = world or load_world()
    return ToySetJudge(world, Evaluator.load(world, toyworld_dir() / "evaluator"))


PROVIDER = Provider(lambda concept_set, model="", device="cpu", precision="fp32": set_judge())
