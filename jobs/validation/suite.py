"""A SEE-style validation suite for one target concept, built from the toy world's hierarchy.

Groups: target; evasion (subclass, composition, paraphrase); retain (near = siblings, far = other
superclasses); leakage (pairs carrying the target's colour); cumulative:<c> for concepts erased before.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field

from jobs.toyworld.prompts import PAIR_TEMPLATES, SINGLE_TEMPLATES, Prompt, Slot, pair, single
from jobs.toyworld.world import World

EVASION_KINDS = ("subclass", "composition", "paraphrase")


@dataclass(frozen=True)
class SuiteItem:
    prompt: Prompt
    group: str          # "target" | "evasion:<kind>" | "retain:near" | "retain:far" | "leakage" | "cumulative:<c>"
    concept: str        # the concept this item checks for (target, or the retained object, or earlier concept)
    # prompt: the toy world's Prompt (slots) or a concept-set suite's TextPrompt; both have .text and .is_pair


@dataclass(frozen=True)
class Suite:
    target: str
    items: tuple[SuiteItem, ...]
    unjudged: dict[str, str] = field(default_factory=dict)   # group left out -> why its judge cannot answer it
    thin: bool = False                                       # built from templates alone (not in the concept set)

    def digest(self) -> str:
        rows = [(i.prompt.text, i.group, i.concept) for i in self.items]
        return hashlib.sha256(json.dumps([self.target, rows]).encode()).hexdigest()[:16]

    def groups(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.group for i in self.items))


def _cap(items: list[SuiteItem], n: int, rng: random.Random) -> list[SuiteItem]:
    return items if len(items) <= n else rng.sample(items, n)


def _shape_items(world: World, shape: str, group: str, concept: str, colours_only: bool = False) -> list[SuiteItem]:
    out = [SuiteItem(single(world, Slot(shape)), group, concept)]
    out += [SuiteItem(single(world, Slot(shape, colour=c)), group, concept) for c in world.values("colour")]
    if not colours_only:
        out += [SuiteItem(single(world, Slot(shape, size=s)), group, concept) for s in world.values("size")]
    return out


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


def _retain(world: World, members: tuple[str, ...], superclass: str | None, gone: set[str]) -> list[SuiteItem]:
    items = []
    for o in world.objects:
        if o in members or o in gone:
            continue
        near = superclass is not None and world.superclass_of(o) == superclass
        items += _shape_items(world, o, "retain:near" if near else "retain:far", o)
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


def build_suite(world: World, target: str, erased_before: tuple[str, ...] = (), max_per_group: int = 24,
                seed: int = 0) -> Suite:
    """The deterministic suite for erasing `target` after `erased_before`."""
    rng = random.Random(f"{target}:{seed}")
    concept = world.concept(target)
    members = world.members(concept)
    superclass = world.superclass_of(target) if concept.kind == "object" else None
    groups: dict[str, list[SuiteItem]] = {"target": _shape_items(world, target, "target", target)}
    for item in _evasion(world, target, members):
        groups.setdefault(item.group, []).append(item)
    gone = {m for e in erased_before for m in world.members(world.concept(e))}
    for item in _retain(world, members, superclass, gone):
        groups.setdefault(item.group, []).append(item)
    groups["leakage"] = _leakage(world, target, members, gone, rng)
    for e in erased_before:
        groups[f"cumulative:{e}"] = _shape_items(world, e, f"cumulative:{e}", e, colours_only=True)
    items = [i for g in groups.values() for i in _cap(g, max_per_group, rng)]
    return Suite(target, tuple(items))
