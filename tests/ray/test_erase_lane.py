"""The erase lane on a real local Ray whose node says it has 3 GPUs: an erase started in the lane runs at
once while gate shards queue for the other GPUs; without it, it waits behind them."""
from __future__ import annotations

import time

import pytest
import ray

from orchestrator.ray.lane import EraseLane

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def gpu_ray():
    ray.init(address="local", num_cpus=4, num_gpus=3, include_dashboard=False,
             object_store_memory=100 * 1024 * 1024, logging_level="WARNING")
    yield
    ray.shutdown()


@ray.remote(num_cpus=0)
def hold(seconds: float) -> float:
    start = time.time()
    time.sleep(seconds)
    return start


def _erase_after_gates(lane: EraseLane | None) -> tuple[float, list[float]]:
    """Four one-GPU gate shards of 2 s queued first, then one erase: (erase start, shard starts)."""
    shards = [hold.options(num_gpus=1).remote(2.0) for _ in range(4)]
    time.sleep(0.5)   # the shards hold every GPU outside the lane; the rest queue
    options = lane.options() if lane else {}
    erase = hold.options(num_gpus=1, num_cpus=1, **options).remote(0.1)
    if lane:
        lane.occupy(erase, options)
    started = ray.get(erase)
    if lane:
        lane.release(erase)
    return started, ray.get(shards)


def test_an_erase_in_the_lane_does_not_queue_behind_gate_shards(gpu_ray):
    lane = EraseLane.open(1, 1)
    try:
        erase, shards = _erase_after_gates(lane)
        assert erase < sorted(shards)[-1] - 1.0   # it ran while a shard still waited for a GPU
    finally:
        lane.close()
    # The same without the lane: the erase waits for a shard to end.
    erase, shards = _erase_after_gates(None)
    assert erase >= sorted(shards)[0] + 1.5


def test_the_lane_holds_one_erase_and_a_cpu_step_has_none(gpu_ray):
    assert EraseLane.open(0, 1) is None   # a CPU step: nothing scarce to keep
    lane = EraseLane.open(1, 1)
    try:
        first = lane.options()
        assert first
        lane.occupy("a", first)
        assert lane.options() == {}          # busy: the next erase goes to the cluster
        lane.release("b")
        assert lane.options() == {}          # only its holder frees it
        lane.release("a")
        assert lane.options()
    finally:
        lane.close()
