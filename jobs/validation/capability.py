"""A memorization-style capability score per gate (Forget-Me-Not's M-Score idea): how well the model
still draws each concept of a fixed bench, relative to the base model.

    bench = toy_bench(world)                         # the same prompts on every gate
    probe = CapabilityProbe(bench, validator, world)
    probe.draw_base(pipe, model)                     # the base model's observations, cached
    ...stack the deltas...
    capability = probe.measure(pipe, erased)         # -> Capability

The toy bench (TOY_BENCH) is every object twice ("a star", "a red star") and six attribute
compositions (one per superclass and two more, each stating colour with size or material), one seed
each: 30 images per gate. An entry counts as drawn when the judge sees its object with the stated
attributes. The score leaves out the entries erased so far (their objects are meant to be gone): it
is the share of the remaining entries' images recognised, over the base model's share.
"""
from __future__ import annotations

import time
from dataclasses import replace

from jobs.toyworld.prompts import Slot, single
from jobs.toyworld.world import World
from jobs.validation.observations import Observation
from jobs.validation.suite import Suite, SuiteItem
from jobs.validation.validator import generate
from orchestrator.core.contracts import Capability

TOY_BENCH = "toy-objects-v1"
GROUP = "retain:far"   # the toy judge's rule for it: the named object with the stated attributes


def _composition(world: World, i: int, shape: str) -> Slot:
    colour = world.values("colour")[i % len(world.values("colour"))]
    if i % 2:
        return Slot(shape, colour=colour, material=world.values("material")[-1])
    return Slot(shape, colour=colour, size=world.values("size")[i % len(world.values("size"))])


def toy_bench(world: World) -> Suite:
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


class CapabilityProbe:
    """One gate's capability measurement. One seed per prompt; the base model's answer is cached."""

    def __init__(self, bench: Suite, validator, world: World):
        self.bench, self.validator, self.world = bench, validator, world
        self.spec = replace(validator.spec, seeds=1)
        self.keys = [(i, 0) for i in range(len(bench.items))]
        self.base: list[Observation] | None = None
        self.seconds = 0.0

    def draw_base(self, pipe, model: str) -> None:
        t0 = time.time()
        cache = self.validator.cache
        key = "capability-" + cache.key(model, self.bench, self.spec, self.validator.judge.cache_id)
        self.base = cache.load(key)
        if self.base is None or len(self.base) != len(self.keys):
            self.base = self._observe(pipe)
            cache.save(key, self.base)
        self.seconds += time.time() - t0

    def measure(self, pipe, erased: tuple[str, ...]) -> Capability:
        """The candidate's capability; `erased` names the concepts erased so far, candidate included."""
        t0 = time.time()
        seen = self._observe(pipe)
        gone = {m for c in erased for m in self.world.members(self.world.concept(c))}
        entries = list(dict.fromkeys(entry(i) for i in self.bench.items))
        gone_entries = tuple(dict.fromkeys(entry(i) for i in self.bench.items if i.concept in gone))
        kept = [k for k, item in enumerate(self.bench.items) if entry(item) not in gone_entries]
        base_hits = sum(self.base[k].hit for k in kept)
        self.seconds += time.time() - t0
        return Capability(
            bench=self.bench.target,
            score=sum(seen[k].hit for k in kept) / base_hits if base_hits else 0.0,
            drawn=self._shares(seen, entries), base=self._shares(self.base, entries), erased=gone_entries,
            images=len(seen), seconds=round(self.seconds, 3))

    def _observe(self, pipe) -> list[Observation]:
        images = generate(pipe, self.bench, self.keys, self.spec)
        return self.validator.judge.observe(self.bench, self.keys, images)

    def _shares(self, obs: list[Observation], entries: list[str]) -> dict[str, float]:
        out = {}
        for e in entries:
            hits = [o.hit for o in obs if entry(self.bench.items[o.item]) == e]
            out[e] = sum(hits) / len(hits)
        return out
