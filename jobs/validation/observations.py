"""What a judge says about one generated image of a suite, and the drift between two models' answers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Observation:
    item: int
    seed: int
    hit: bool                 # concept still drawn (target/evasion/cumulative), correct (retain), leaked (leakage)
    posterior: tuple[float, ...]  # the judge's posteriors (toy: shape then colour; presence: p, 1 - p), for drift


def drift_kl(base: list[Observation], cand: list[Observation], n_shape: int) -> float:
    """Mean KL(base || candidate) of the posteriors over paired observations.

    The posterior is split at `n_shape` into two distributions (toy: shape, colour); a judge whose
    posterior is one distribution passes its length, leaving the second part empty.
    """
    if not base:
        return 0.0
    eps = 1e-6
    total = 0.0
    for b, c in zip(base, cand):
        pb, pc = np.asarray(b.posterior) + eps, np.asarray(c.posterior) + eps
        for sl in (slice(0, n_shape), slice(n_shape, None)):
            if not pb[sl].size:
                continue
            p, q = pb[sl] / pb[sl].sum(), pc[sl] / pc[sl].sum()
            total += float(np.sum(p * np.log(p / q)))
    return total / len(base)


def labels(o: Observation, split: int) -> tuple[int, ...]:
    """The judge's answer for one image: the argmax of each posterior part (toy: shape, colour)."""
    p = np.asarray(o.posterior)
    return tuple(int(part.argmax()) for part in (p[:split], p[split:]) if part.size)


def label_changed(base: list[Observation], cand: list[Observation], split: int) -> list[bool]:
    """Per paired observation (same prompt, same seed): did the judged object or an attribute change?"""
    return [labels(b, split) != labels(c, split) for b, c in zip(base, cand)]
