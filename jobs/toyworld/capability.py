"""The toy world's capability bench (jobs/validation/capability.py measures it on every gate).

TOY_BENCH is every object twice ("a star", "a red star") and six attribute compositions (one per
superclass and two more, each stating colour with size or material), one seed each: 30 images per gate.
An entry counts as drawn when the judge sees its object with the stated attributes; the objects an
erased concept covers (its members) leave the score.
"""
from __future__ import annotations

from jobs.toyworld.prompts import Slot, single
from jobs.toyworld.world import World
from jobs.validation.capability import Bench
from jobs.validation.suite import Suite, SuiteItem

TOY_BENCH = "toy-objects-v1"
GROUP = "retain:far"   # the toy judge's rule for it: the named object with the stated attributes


def _composition(world: World, i: int, shape: str) -> Slot:
    colour = world.values("colour")[i % len(world.values("colour"))]
    if i % 2:
        return Slot(shape, colour=colour, material=world.values("material")[-1])
    return Slot(shape, colour=colour, size=world.values("size")[i % len(world.values("size"))])


def toy_suite(world: World) -> Suite:
    """Every object plain and coloured, and compositions: entries are named by object or prompt text."""
    colours = world.values("colour")
    items = []
    for i, o in enumerate(world.objects):
        items += [SuiteItem(single(world, Slot(o)), GROUP, o),
                  SuiteItem(single(world, Slot(o, colour=colours[i % len(colours)])), GROUP, o)]
    picks = [members[0] for members in world.superclasses.values()] + [world.objects[4], world.objects[7]]
    for i, o in enumerate(picks):
        items.append(SuiteItem(single(world, _composition(world, i, o)), GROUP, o))
    return Suite(TOY_BENCH, tuple(items))


def entry(item: SuiteItem) -> str:
    """The bench entry an item counts for: its object, or a composition's prompt text."""
    slot = item.prompt.slots[0]
    return item.prompt.text if slot.size or slot.material else slot.shape


def toy_bench(world: World) -> Bench:
    """The bench, with the objects erased concepts take (their members)."""
    return Bench(toy_suite(world), entry,
                 lambda erased: {m for c in erased for m in world.members(world.concept(c))})
