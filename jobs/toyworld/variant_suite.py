"""The suite groups of a variant target ("red star", "small blue circle", "outline square").

The side-effects study's question is whether erasing one leaf damages its neighbours, so:

- target: the variant in every single-object template;
- evasion: subclass = the variant with one more attribute stated ("a small red star"), composition =
  fully specified instances in other templates, paraphrase = attribute synonyms ("a crimson star");
- retain:near = the same object with another value of a fixed attribute ("a blue star", "a small
  green star" for "small blue star"), and the sibling objects; retain:far = other superclasses;
  instances of variants erased earlier are left out, as whole objects erased earlier are;
- leakage: pairs where the variant keeps its colour and the other object should not take it.

A hit on target, evasion and cumulative prompts is the judge seeing the object with every fixed
attribute (jobs/toyworld/judge.py).
"""
from __future__ import annotations

import random

from jobs.toyworld.prompts import PAIR_TEMPLATES, SINGLE_TEMPLATES, Slot, pair, single
from jobs.toyworld.suite_items import erased_slot, retain_items
from jobs.toyworld.world import ATTRIBUTE_KINDS, Concept, World
from jobs.validation.suite import SuiteItem


def variant_groups(world: World, c: Concept, gone: set[str], erased: tuple[Concept, ...],
                   rng: random.Random) -> dict[str, list[SuiteItem]]:
    slot = Slot(c.shape, **dict(c.fixed))
    groups = {"target": [SuiteItem(single(world, slot, template=t), "target", c.name)
                         for t in range(len(SINGLE_TEMPLATES))]}
    groups.update(_evasion(world, c, slot))
    near = [i for i in _other_values(world, c) if not erased_slot(world, i.prompt.slots[0], erased)]
    for item in near + retain_items(world, (c.shape,), world.superclass_of(c.shape), gone, erased):
        groups.setdefault(item.group, []).append(item)
    groups["leakage"] = _leakage(world, c, slot, gone, rng)
    return groups


def _evasion(world: World, c: Concept, slot: Slot) -> dict[str, list[SuiteItem]]:
    free = [k for k in ATTRIBUTE_KINDS if c.attribute(k) is None]
    sub = [Slot(c.shape, **{**dict(c.fixed), k: v}) for k in free for v in world.values(k)]
    full = [Slot(c.shape, **{**dict(c.fixed), **dict(zip(free, combo))}) for combo in _combos(world, free)]
    return {
        "evasion:subclass": [SuiteItem(single(world, s), "evasion:subclass", c.name) for s in sub],
        "evasion:composition": [SuiteItem(single(world, s, template=1 + i % 3), "evasion:composition", c.name)
                                for i, s in enumerate(full)],
        "evasion:paraphrase": [SuiteItem(single(world, slot, template=t, variant=1), "evasion:paraphrase", c.name)
                               for t in range(1, len(SINGLE_TEMPLATES))],
    }


def _combos(world: World, kinds: list[str]) -> list[tuple[str, ...]]:
    combos: list[tuple[str, ...]] = [()]
    for k in kinds:
        combos = [c + (v,) for c in combos for v in world.values(k)]
    return combos


def _other_values(world: World, c: Concept) -> list[SuiteItem]:
    """The same object with one fixed attribute changed: what erasing this leaf must not take."""
    items = []
    for kind, value in c.fixed:
        for other in world.values(kind):
            if other != value:
                s = Slot(c.shape, **{**dict(c.fixed), kind: other})
                items.append(SuiteItem(single(world, s), "retain:near", c.shape))
    return items


def _leakage(world: World, c: Concept, slot: Slot, gone: set[str], rng: random.Random) -> list[SuiteItem]:
    """The variant next to another object of another colour; a leak is that object taking the variant's colour."""
    others = [o for o in world.objects if o != c.shape and o not in gone]
    colours = world.values("colour")
    items = []
    for i in range(len(colours)):
        left = slot if slot.colour else Slot(c.shape, **{**dict(c.fixed), "colour": colours[i]})
        right = [x for x in colours if x != left.colour][rng.randrange(len(colours) - 1)]
        o = others[rng.randrange(len(others))]
        items.append(SuiteItem(pair(world, left, Slot(o, colour=right), template=i % len(PAIR_TEMPLATES)),
                               "leakage", c.name))
    return items

