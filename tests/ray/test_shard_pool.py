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
