"""Which earlier-erased concepts a gate re-checks: a fixed prompt budget, stratified and rotating. Pure.

Without a bound, step k re-checks every one of its k-1 earlier concepts and gate cost grows with the
step index (quadratic over a campaign). Here a gate spends at most `budget` prompts on them:

- budget >= prompts of every earlier concept (the first ~budget/per_concept steps): all of them, as before;
- otherwise the budget is spread evenly (stratified): each earlier concept gets budget // n prompts and
  budget % n of them one more; with fewer prompts than concepts, `budget` concepts get one each;
- the concepts that get the extra prompt, and the prompts each concept uses, rotate with the step
  index, so every earlier concept is re-checked within `window(n, budget)` steps (1 while budget >= n);
  a concept's prompts rotate too, and a prompt's noise depends on its text, so each re-check draws
  new images;
- every `sweep_every` steps (0 = never) the gate is a full sweep: every prompt of every earlier concept.

Deterministic in (earlier concepts, step): a resumed campaign rebuilds the same suite.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recheck:
    """One earlier concept's share of a gate: prompt indices into its own pool."""

    concept: str
    prompts: tuple[int, ...]


def is_sweep(step: int, sweep_every: int) -> bool:
    return sweep_every > 0 and step > 0 and step % sweep_every == 0


def window(n_earlier: int, budget: int) -> int:
    """Steps within which every earlier concept is re-checked at least once: ceil(n / budget), 1 if all fit."""
    if n_earlier == 0 or budget >= n_earlier:
        return 1
    return -(-n_earlier // max(budget, 1))


def schedule(earlier: tuple[str, ...], pool_sizes: tuple[int, ...], step: int, budget: int,
             sweep_every: int = 0) -> tuple[Recheck, ...]:
    """Each earlier concept's re-check prompts at gate `step` (1-based), in the order of `earlier`.

    `pool_sizes[i]` is how many prompts concept i has; a concept with no prompts this gate is left out.
    """
    n = len(earlier)
    total = sum(pool_sizes)
    if n == 0:
        return ()
    if total <= budget or is_sweep(step, sweep_every):
        return tuple(Recheck(c, tuple(range(p))) for c, p in zip(earlier, pool_sizes))
    counts = _counts(n, budget, pool_sizes, step)
    out = []
    for i, (c, p, m) in enumerate(zip(earlier, pool_sizes, counts)):
        if m:
            start = (step + i) % p   # rotate which of its prompts a concept shows
            out.append(Recheck(c, tuple(sorted((start + j) % p for j in range(m)))))
    return tuple(out)


def _counts(n: int, budget: int, pool_sizes: tuple[int, ...], step: int) -> list[int]:
    """Prompts per concept: budget // n each, the remainder to concepts rotating from step * remainder."""
    base, extra = divmod(budget, n)
    first = (step * extra) % n if extra else 0
    counts = [base + (1 if (i - first) % n < extra else 0) for i in range(n)]
    counts = [min(c, p) for c, p in zip(counts, pool_sizes)]
    spare = budget - sum(counts)   # concepts with small pools leave prompts: give them to the others in turn
    i = first
    while spare > 0 and any(c < p for c, p in zip(counts, pool_sizes)):
        if counts[i % n] < pool_sizes[i % n]:
            counts[i % n] += 1
            spare -= 1
        i += 1
    return counts
