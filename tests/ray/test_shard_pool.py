"""A sharded gate's pool on a real local Ray: every look drawn once, handed back in order, by whichever
member is free; a helper that starts late joins at a later look instead of holding the gate up.

The helpers here are small actors with the shard worker's interface (ready, observe) that say who drew
each look; tests/ray/test_sharded_gate.py runs the real shard worker on the toy model.
"""
from __future__ import annotations

import time

import pytest
import ray

from orchestrator.ray.shards import ShardPool

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]


@ray.remote(num_cpus=0)
class Helper:
    def __init__(self, name: str, start_s: float = 0.0):
        time.sleep(start_s)   # a pipeline loading, or a GPU coming free
        self.name = name

    def ready(self) -> bool:
        return True

    def observe(self, part):
        time.sleep(0.05)
        return (self.name, part)

    def draw_base(self, part):
        return self.observe(part)


def drawn_here(part):
    time.sleep(0.3)
    return ("gate", part)


def run(pool: ShardPool, looks: int) -> list:
    try:
        return list(pool.observe([[i] for i in range(looks)], drawn_here))
    finally:
        pool.close()


def test_every_look_is_drawn_once_in_order_and_shared_with_started_helpers():
    pool = ShardPool([Helper.remote("a"), Helper.remote("b")], expected=2)
    out = run(pool, 8)
    assert [part for _, part in out] == [[i] for i in range(8)]
    assert {who for who, _ in out} == {"gate", "a", "b"}


def test_a_helper_that_starts_late_joins_at_a_later_look():
    pool = ShardPool([Helper.remote("late", start_s=1.0)], expected=0)   # not placeable when the gate opened
    out = run(pool, 20)   # 6 s of looks here: time for the helper's worker process to start
    assert [part for _, part in out] == [[i] for i in range(20)]
    assert out[0][0] == "gate"                                            # the gate did not wait for it ...
    assert "late" in [who for who, _ in out[4:]]                           # ... and it took looks once started


def test_a_helper_the_free_devices_could_take_is_waited_for():
    pool = ShardPool([Helper.remote("loading", start_s=1.0)], expected=1)
    out = run(pool, 4)
    assert out[1][0] == "loading"   # joined before the first look, so it drew the next one


def _alive(actor) -> bool:
    try:
        return ray.get(actor.ready.remote(), timeout=10) is True
    except ray.exceptions.RayActorError:
        return False


def _gone(actor) -> bool:
    """Whether the actor is dead within 10 s (ray.kill returns before the actor has gone)."""
    for _ in range(100):
        if not _alive(actor):
            return True
        time.sleep(0.1)
    return False


def test_helpers_with_no_look_left_are_let_go_before_the_gate_ends():
    helpers = [Helper.remote("a"), Helper.remote("b"), Helper.remote("c")]
    pool = ShardPool(helpers, expected=3)
    looks = pool.observe([[i] for i in range(6)], drawn_here)
    out = [next(looks) for _ in range(5)]   # the last look is still to come back ...
    time.sleep(1.0)   # ray.kill returns before the actor has gone
    assert not all(_alive(h) for h in helpers)   # ... yet a helper with nothing left to draw is gone
    out.append(next(looks))
    assert [part for _, part in out] == [[i] for i in range(6)]
    assert pool.joined() == 3   # still counted as joined
    pool.close()


def test_base_images_keep_their_helpers_for_the_candidate_and_release_lets_them_go():
    helpers = [Helper.remote("a"), Helper.remote("b")]
    pool = ShardPool(helpers, expected=2)
    list(pool.draw_base([[i] for i in range(4)], drawn_here))
    assert all(_alive(h) for h in helpers)   # the candidate's looks come next
    pool.release()
    assert all(_gone(h) for h in helpers) and pool.joined() == 2
    pool.close()   # closing after a release is harmless
