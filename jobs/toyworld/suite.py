"""A SEE-style validation suite for one target concept, built from the toy world's hierarchy.

Groups: target; evasion (subclass, composition, paraphrase); retain (near = siblings, far = other
superclasses); leakage (pairs carrying the target's colour); cumulative:<c> for concepts erased before,
as many as the gate's cumulative budget allows (erasecore/cumulative.py picks which, rotating
with the step). A variant target ("red star") gets its own groups (jobs/toyworld/variant_suite.py).
"""
from __future__ import annotations

import random

from jobs.toyworld.prompts import PAIR_TEMPLATES, SINGLE_TEMPLATES, Slot, pair, single
from jobs.toyworld.suite_items import erased_slot, retain_items, shape_items
from jobs.toyworld.variant_suite import variant_groups
from jobs.toyworld.world import Concept, World
from jobs.validation.suite import SWEEP, Suite, SuiteItem
from erasecore.cumulative import schedule

__all__ = ["DEFAULT_CUMULATIVE_BUDGET", "build_suite", "build_sweep_suite", "cumulative_pool", "erased_slot",
           "retain_items"]

# Prompts per gate for earlier concepts when a request names no budget: 10 earlier objects' worth,
# so campaigns of up to 11 concepts keep the suites they always had.
DEFAULT_CUMULATIVE_BUDGET = 50


def _cap(items: list[SuiteItem], n: int, rng: random.Random) -> list[SuiteItem]:
    return items if len(items) <= n else rng.sample(items, n)


def _evasion(world: World, name: str, members: tuple[str, ...]) -> list[SuiteItem]:
    items = []
    for m in members:
        subs = [Slot(m, colour=c) for c in world.values("colour")] + [Slot(m, material=x) for x in world.values("material")]
        if m != name:
            subs.append(Slot(m))
        items += [SuiteItem(single(world, s), "evasion:subclass", name) for s in subs]
        for i, c in enumerate(world.values("colour")):
            s = Slot(m, c, world.values("size")[i % 2], world.values("material")[(i // 2) % 2])
            items.append(SuiteItem(single(world, s, template=1 + i % 3), "evasion:composition", name))
        for t in range(1, len(SINGLE_TEMPLATES)):
            items.append(SuiteItem(single(world, Slot(m, colour=world.values("colour")[t % 4]), template=t, variant=1),
                                 "evasion:paraphrase", name))
    return items


def _leakage(world: World, name: str, members: tuple[str, ...], gone: set[str], rng: random.Random) -> list[SuiteItem]:
    others = [o for o in world.objects if o not in members and o not in gone]
    colours = world.values("colour")
    items = []
    for m in members:
        for i, c in enumerate(colours):
            o = others[rng.randrange(len(others))]
            c2 = colours[(i + 1 + rng.randrange(len(colours) - 1)) % len(colours)]
            items.append(SuiteItem(pair(world, Slot(m, colour=c), Slot(o, colour=c2),
                                        template=i % len(PAIR_TEMPLATES)), "leakage", name))
    return items


def cumulative_pool(world: World, concept: str) -> list[SuiteItem]:
    """Every prompt that re-checks an earlier concept; a gate uses the ones its budget schedules."""
    c = world.concept(concept)
    group = f"cumulative:{concept}"
    if c.kind == "variant":
        slot = Slot(c.shape, **dict(c.fixed))
        return [SuiteItem(single(world, slot, template=t), group, concept) for t in range(len(SINGLE_TEMPLATES))]
    return shape_items(world, concept, group, concept, colours_only=True)


def _cumulative(world: World, erased_before: tuple[str, ...], step: int, budget: int,
                sweep_every: int) -> dict[str, list[SuiteItem]]:
    pools = [cumulative_pool(world, e) for e in erased_before]
    plan = schedule(erased_before, tuple(len(p) for p in pools), step, budget, sweep_every)
    by_name = dict(zip(erased_before, pools))
    return {f"cumulative:{r.concept}": [by_name[r.concept][i] for i in r.prompts] for r in plan}


def _gone(world: World, erased_before: tuple[str, ...]) -> tuple[set[str], tuple[Concept, ...]]:
    """Objects erased whole, and the variants erased (only their instances are gone)."""
    concepts = tuple(world.concept(e) for e in erased_before)
    return {m for c in concepts for m in world.members(c)}, tuple(c for c in concepts if c.kind == "variant")


def build_suite(world: World, target: str, erased_before: tuple[str, ...] = (), max_per_group: int = 24,
                seed: int = 0, step: int = 0, cumulative_budget: int = DEFAULT_CUMULATIVE_BUDGET,
                sweep_every: int = 0) -> Suite:
    """The deterministic suite for erasing `target` at `step` after `erased_before`."""
    rng = random.Random(f"{target}:{seed}")
    concept = world.concept(target)
    gone, erased_variants = _gone(world, erased_before)
    if concept.kind == "variant":
        groups = variant_groups(world, concept, gone, erased_variants, rng)
    else:
        groups = _shape_groups(world, target, concept, gone, erased_variants, rng)
    groups.update(_cumulative(world, erased_before, step, cumulative_budget, sweep_every))
    items = [i for g in groups.values() for i in _cap(g, max_per_group, rng)]
    return Suite(target, tuple(items))


def _shape_groups(world: World, target: str, concept: Concept, gone: set[str], erased_variants: tuple[Concept, ...],
                  rng: random.Random) -> dict[str, list[SuiteItem]]:
    members = world.members(concept)
    superclass = world.superclass_of(target) if concept.kind == "object" else None
    groups: dict[str, list[SuiteItem]] = {"target": shape_items(world, target, "target", target)}
    for item in _evasion(world, target, members):
        groups.setdefault(item.group, []).append(item)
    for item in retain_items(world, members, superclass, gone, erased_variants):
        groups.setdefault(item.group, []).append(item)
    groups["leakage"] = _leakage(world, target, members, gone, rng)
    return groups


def build_sweep_suite(world: World, erased: tuple[str, ...]) -> Suite:
    """The end-of-campaign sweep: every prompt of every committed concept, nothing else."""
    items = [i for e in erased for i in cumulative_pool(world, e)]
    return Suite(SWEEP, tuple(items))
