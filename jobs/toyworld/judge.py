"""The toy world's judge: its evaluator turns generated images into per-image observations of a toy suite.

It answers every question a toy suite asks (which object, which colour, size and material; pair
scenes judged half by half), so no group is left out.
"""
from __future__ import annotations

import numpy as np

from erasecore.contracts import JudgeIdentity
from jobs.toyworld.evaluator import Evaluator, Verdicts
from jobs.toyworld.world import World
from jobs.validation.judges.identity import versions, weight_hashes
from jobs.validation.observations import Observation
from jobs.validation.suite import Suite, SuiteItem

RULE = ("argmax of each head (shape, colour, size, material), no threshold: the image shows its top class; "
        "pair scenes are judged half by half")


def _stated_attributes_match(item: SuiteItem, v: Verdicts, row: int) -> bool:
    slot = item.prompt.slots[0]
    for kind in ("colour", "size", "material"):
        want = slot.attribute(kind)
        if want is not None and v.top(kind)[row] != want:
            return False
    return True


def _hit(world: World, item: SuiteItem, left: Verdicts, right: Verdicts | None, row: int) -> bool:
    shape = left.top("shape")[row]
    if item.group.startswith("retain"):
        return shape == item.concept and _stated_attributes_match(item, left, row)
    if item.group == "leakage":
        target_colour = item.prompt.slots[0].colour
        return right is not None and right.top("colour")[row] == target_colour
    return _drawn(world, item.concept, left, row)


def _drawn(world: World, concept: str, v: Verdicts, row: int) -> bool:
    """The image shows the concept: its object (a member, for a superclass); for a variant, also each fixed value."""
    c = world.concept(concept)
    if c.kind != "variant":
        return v.top("shape")[row] in world.members(c)
    return world.covers(c, v.top("shape")[row], {k: v.top(k)[row] for k, _ in c.fixed})


def observe(world: World, evaluator: Evaluator, suite: Suite, keys: list[tuple[int, int]],
            images: np.ndarray) -> list[Observation]:
    """One observation per (item index, seed) key, judged on its image."""
    pair_rows = [i for i, (item, _) in enumerate(keys) if suite.items[item].prompt.is_pair]
    single_rows = [i for i in range(len(keys)) if i not in set(pair_rows)]
    out: dict[int, Observation] = {}
    if single_rows:
        v = evaluator.judge(images[single_rows])
        for r, i in enumerate(single_rows):
            out[i] = _observation(world, suite, keys[i], v, None, r)
    if pair_rows:
        left, right = evaluator.judge_pairs(images[pair_rows])
        for r, i in enumerate(pair_rows):
            out[i] = _observation(world, suite, keys[i], left, right, r)
    return [out[i] for i in range(len(keys))]


def _observation(world, suite, key, left: Verdicts, right, row) -> Observation:
    item = suite.items[key[0]]
    post = np.concatenate([left.probs["shape"][row], left.probs["colour"][row]])
    return Observation(key[0], key[1], bool(_hit(world, item, left, right, row)),
                       tuple(float(x) for x in post))


class ToyJudge:
    """The toy world's evaluator behind the judge interface the validator uses."""

    name = "toyworld"
    cache_id = ""        # the baseline cache keys of toy gates predate judges: keep them

    def __init__(self, world: World, evaluator: Evaluator):
        self.world, self.evaluator = world, evaluator
        self.posterior_split = len(evaluator.classes["shape"])   # shape posteriors, then colour

    def observe(self, suite: Suite, keys: list[tuple[int, int]], images: np.ndarray) -> list[Observation]:
        return observe(self.world, self.evaluator, suite, keys, images)

    def identity(self) -> JudgeIdentity:
        """The evaluator's weight file (jobs/toyworld/weights/evaluator), its heads' classes, its argmax rule."""
        file = self.evaluator.weights_file
        return JudgeIdentity(
            name=self.name, source=str(file.parent) if file else "untrained (Evaluator.fresh)",
            weights=weight_hashes(file.parent, [file]) if file else {},
            classes=tuple(f"{head}:{c}" for head, labels in self.evaluator.classes.items() for c in labels),
            rule=RULE, libraries=versions("torch", "safetensors"))
