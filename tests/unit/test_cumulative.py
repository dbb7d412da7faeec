"""Bounded cumulative checks: a gate's earlier-concept prompts stay flat in the step index, every earlier
concept is re-checked within the stated window, sweeps are full, and small campaigns keep their suites."""
from __future__ import annotations

from collections import Counter

from jobs.toyworld.world import load_world
from jobs.toyworld.suite import build_suite, cumulative_pool
from erasecore.cumulative import is_sweep, schedule, window

NAMES = tuple(f"c{i}" for i in range(44))


def prompts_at(step: int, budget: int = 50, pool: int = 7, sweep_every: int = 0) -> int:
    earlier = NAMES[:step - 1]
    return sum(len(r.prompts) for r in schedule(earlier, (pool,) * len(earlier), step, budget, sweep_every))


def test_gate_cost_is_flat_once_the_budget_is_reached():
    curve = [prompts_at(k) for k in range(1, 45)]
    assert curve[:8] == [7 * (k - 1) for k in range(1, 9)]       # 7 concepts x 7 prompts fit in 50
    assert set(curve[8:]) == {50}                                  # then the budget, never more


def test_every_earlier_concept_is_rechecked_within_the_window():
    for n, budget in ((43, 10), (43, 50), (20, 7), (30, 1)):
        earlier, w = NAMES[:n], window(n, budget)
        for start in range(1, 12):
            seen = {r.concept for k in range(start, start + w) for r in schedule(earlier, (7,) * n, k, budget)}
            assert seen == set(earlier), (n, budget, start)
        assert w == -(-n // budget) if budget < n else w == 1


def test_prompts_spread_evenly_and_rotate():
    plans = [schedule(NAMES[:20], (7,) * 20, k, 50) for k in (21, 22)]
    counts = [Counter({r.concept: len(r.prompts) for r in p}) for p in plans]
    assert all(set(c.values()) == {2, 3} and sum(c.values()) == 50 for c in counts)
    assert plans[0] != plans[1]                                    # another step, other prompts
    assert schedule(NAMES[:20], (7,) * 20, 21, 50) == plans[0]     # deterministic: resume rebuilds it


def test_every_kth_gate_is_a_full_sweep():
    assert is_sweep(10, 10) and not is_sweep(11, 10) and not is_sweep(10, 0)
    assert prompts_at(30, sweep_every=10) == 29 * 7 and prompts_at(31, sweep_every=10) == 50


def test_small_campaigns_keep_every_cumulative_prompt():
    world = load_world()
    earlier = ("star", "square", "round", "triangle", "arrow", "house", "cross", "diamond", "circle", "crescent")
    suite = build_suite(world, "heart", earlier, step=11)
    groups = Counter(i.group for i in suite.items)
    assert {e: groups[f"cumulative:{e}"] for e in earlier} == {e: len(cumulative_pool(world, e)) for e in earlier}
    assert suite.digest() == build_suite(world, "heart", earlier).digest()   # the step index changes nothing


def test_a_long_variant_campaign_has_flat_gates():
    world = load_world()
    variants = tuple(f"{c} {o}" for o in ("star", "square", "circle", "cross", "heart") for c in world.values("colour"))
    sizes = [len(build_suite(world, v, variants[:k], step=k + 1).items) for k, v in enumerate(variants)]
    cumulative = [sum(i.group.startswith("cumulative:") for i in build_suite(world, v, variants[:k], step=k + 1).items)
                  for k, v in enumerate(variants)]
    assert max(cumulative) == 50 and cumulative[-1] == 50
    assert max(sizes[10:]) - min(sizes[10:]) <= 10                    # flat (retain shrinks as leaves go)
