"""Suite items on the toy world's hierarchy that the object suite (jobs/toyworld/suite.py) and the variant
suite (jobs/toyworld/variant_suite.py) share: an object's prompts, the retained objects, erased variants."""
from __future__ import annotations

from jobs.toyworld.prompts import Slot, single
from jobs.toyworld.world import ATTRIBUTE_KINDS, Concept, World
from jobs.validation.suite import SuiteItem


def shape_items(world: World, shape: str, group: str, concept: str, colours_only: bool = False) -> list[SuiteItem]:
    out = [SuiteItem(single(world, Slot(shape)), group, concept)]
    out += [SuiteItem(single(world, Slot(shape, colour=c)), group, concept) for c in world.values("colour")]
    if not colours_only:
        out += [SuiteItem(single(world, Slot(shape, size=s)), group, concept) for s in world.values("size")]
    return out


def retain_items(world: World, members: tuple[str, ...], superclass: str | None, gone: set[str],
            erased: tuple[Concept, ...] = ()) -> list[SuiteItem]:
    items = []
    for o in world.objects:
        if o in members or o in gone:
            continue
        near = superclass is not None and world.superclass_of(o) == superclass
        items += shape_items(world, o, "retain:near" if near else "retain:far", o)
    return [i for i in items if not erased_slot(world, i.prompt.slots[0], erased)]


def erased_slot(world: World, slot: Slot, erased: tuple[Concept, ...]) -> bool:
    """Whether a prompt's object is an instance of an erased variant (its stated attributes say so)."""
    stated = {k: slot.attribute(k) for k in ATTRIBUTE_KINDS}
    return any(c.kind == "variant" and world.covers(c, slot.shape, stated) for c in erased)
