"""Turn generated images into per-image observations for a suite (the toy world's evaluator as judge)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jobs.toyworld.evaluator import Evaluator, Verdicts
from jobs.toyworld.world import World
from jobs.validation.suite import Suite, SuiteItem


@dataclass(frozen=True)
class Observation:
    item: int
    seed: int
    hit: bool                 # concept still drawn (target/evasion/cumulative), correct (retain), leaked (leakage)
    posterior: tuple[float, ...]  # shape + colour posteriors (left object for pairs), for drift


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
    return shape in world.members(world.concept(item.concept))


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


def drift_kl(base: list[Observation], cand: list[Observation], n_shape: int) -> float:
    """Mean KL(base || candidate) of the shape and colour posteriors over paired observations."""
    if not base:
        return 0.0
    eps = 1e-6
    total = 0.0
    for b, c in zip(base, cand):
        pb, pc = np.asarray(b.posterior) + eps, np.asarray(c.posterior) + eps
        for sl in (slice(0, n_shape), slice(n_shape, None)):
            p, q = pb[sl] / pb[sl].sum(), pc[sl] / pc[sl].sum()
            total += float(np.sum(p * np.log(p / q)))
    return total / len(base)
