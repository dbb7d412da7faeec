"""A memorization-style capability score per gate (Forget-Me-Not's M-Score idea): how well the model
still draws each concept of a fixed bench, relative to the base model.

    bench = provider.capability_bench()              # the same prompts on every gate (the toy world's:
    probe = CapabilityProbe(bench, validator)        #   jobs/toyworld/capability.py)
    probe.draw_base(pipe, model)                     # the base model's observations, cached
    ...stack the deltas...
    capability = probe.measure(pipe, erased)         # -> Capability

One seed per prompt. The score leaves out the entries erased so far (their concepts are meant to be
gone): it is the share of the remaining entries' images recognised, over the base model's share.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from jobs.validation.observations import Observation
from jobs.validation.suite import Suite, SuiteItem
from jobs.validation.validator import generate
from erasecore.contracts import Capability


@dataclass(frozen=True)
class Bench:
    """A provider's capability bench: its suite (named by its target), the entry an item counts for, and
    the concepts an erasure takes with it (an item whose concept is among them is left out of the score)."""

    suite: Suite
    entry: Callable[[SuiteItem], str]
    gone: Callable[[tuple[str, ...]], set[str]]


class CapabilityProbe:
    """One gate's capability measurement. One seed per prompt; the base model's answer is cached."""

    def __init__(self, bench: Bench, validator):
        self.bench, self.validator = bench.suite, validator
        self.entry, self.gone = bench.entry, bench.gone
        self.spec = replace(validator.spec, seeds=1)
        self.keys = [(i, 0) for i in range(len(self.bench.items))]
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
        entry = self.entry
        seen = self._observe(pipe)
        gone = self.gone(erased)
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
            hits = [o.hit for o in obs if self.entry(self.bench.items[o.item]) == e]
            out[e] = sum(hits) / len(hits)
        return out
