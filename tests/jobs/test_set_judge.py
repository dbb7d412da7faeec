"""The toy evaluator behind a concept-set suite (jobs/toyworld/set_judge.py), on rendered images whose truth is
known: a concept's items are hits on its own object (in the asked colour, for a variant), misses on a sibling;
a leakage item is a hit only when the other object carries the target's colour."""
from __future__ import annotations

import numpy as np

from erasecore.concepts import load_concept_set
from jobs.toyworld.render import place_pair, place_single, render
from jobs.toyworld.set_judge import set_judge
from jobs.toyworld.world import ObjectSpec, load_world
from jobs.validation.concept_suite import build_concept_suite


def spec(shape: str, colour: str) -> ObjectSpec:
    return ObjectSpec(shape, colour, "large", "solid")


def test_concept_set_items_are_judged_by_what_the_image_shows():
    world, judge = load_world(), set_judge()
    suite = build_concept_suite(load_concept_set("toyworld"), "star", judge=judge)
    target = next(i for i, it in enumerate(suite.items) if it.group == "target")
    leak = next(i for i, it in enumerate(suite.items) if it.group == "leakage")
    prompt = suite.items[leak].prompt
    rng = np.random.default_rng(0)
    star, square = (render(world, place_single(world, spec(s, "green"), rng)) for s in ("star", "square"))
    other_colour = next(c for c in world.values("colour") if c != prompt.attribute)
    leaked, kept = (render(world, place_pair(world, spec("star", prompt.attribute), spec(prompt.other, c), rng))
                    for c in (prompt.attribute, other_colour))
    seen = judge.observe(suite, [(target, 0), (target, 1), (leak, 0), (leak, 1)],
                         np.stack([star, square, leaked, kept]))
    assert [o.hit for o in seen] == [True, False, True, False]
    assert judge.why_not("leakage", None) is None and judge.identity().name == "toyworld-set"
    assert judge.identity().weights   # the evaluator's weight file, hashed
