"""A sharded gate: the validation task's looks shared with helper actors on other GPUs.

    shards = shard_count(spec.validation.shards, spec.resources.validation_gpus)   # in the driver
    pool = ShardPool.open(request, candidate, shards - 1, cpus, gpus)             # in the validation task
    run_validation(request, candidate, spread=pool)

Look i goes to member i % n (member 0 is the validation task itself, the others are helper actors
running jobs/validation/shard_worker.Shard); n looks are drawn at once and handed back in look
order, so the validator's stop rule is evaluated on exactly the observations of the unsharded gate
after each look. When it stops early, the looks drawn ahead are dropped (at most n - 1). Helpers
that no node can start within SHARD_START_S are left out: fewer shards, the same report.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

import ray

SHARD_START_S = 60.0


def shard_count(requested: int, gpus_per_shard: float, reserve: float = 0.0) -> int:
    """validation.shards, or with 0 one shard per GPU of the cluster (at least one).

    All the cluster's GPUs, not the ones free this instant: shards queue for GPUs like any task, so a
    gate that starts while the last one ends still gets every GPU as they come free (counting only the
    free ones would give it one shard and leave the rest idle). `reserve` GPUs are left out: the
    speculative erase the pipelined loop starts next must not queue behind this gate's shards, or the
    erase chain (the campaign's critical path) waits for every gate."""
    if requested >= 1:
        return requested
    if gpus_per_shard <= 0:
        return 1   # a CPU gate: GPUs mean nothing; one shard, as unsharded
    free = ray.cluster_resources().get("GPU", 0.0) - reserve
    return max(1, math.floor(free / gpus_per_shard + 1e-9))


class ShardPool:
    """The helpers of one gate; a jobs.validation.shards.Spread. close() ends them."""

    def __init__(self, actors: list):
        self.actors, self.members = actors, None

    @classmethod
    def open(cls, request, candidate, helpers: int, cpus: float, gpus: float) -> ShardPool:
        from jobs.validation.shard_worker import Shard   # torch: only inside the task
        actor = ray.remote(max_restarts=0)(Shard)
        return cls([actor.options(num_cpus=cpus, num_gpus=gpus, name=None).remote(request, candidate)
                    for _ in range(helpers)])

    def draw_base(self, looks, local: Callable) -> Generator[Any, None, None]:
        return self._run(looks, local, "draw_base")

    def observe(self, looks, local: Callable) -> Generator[Any, None, None]:
        return self._run(looks, local, "observe")

    def started(self) -> int:
        return len(self._helpers())

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a)

    def _helpers(self) -> list:
        """The helpers that started (each loads the pipeline while the gate's process loads its own)."""
        if self.members is None:
            refs = {a.ready.remote(): a for a in self.actors}
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=SHARD_START_S)
            self.members = [refs[r] for r in refs if r in ready and _started(r)]
        return self.members

    def _run(self, looks, local: Callable, method: str) -> Generator[Any, None, None]:
        helpers = self._helpers()
        n = len(helpers) + 1
        pending: dict[int, Any] = {}
        for i, part in enumerate(looks):
            for j in range(i, min(i + n, len(looks))):
                if j % n and j not in pending and j >= i:
                    pending[j] = getattr(helpers[j % n - 1], method).remote(looks[j])
            yield local(part) if i % n == 0 else ray.get(pending.pop(i))


def _started(ref) -> bool:
    try:
        return ray.get(ref, timeout=0) is True
    except Exception:  # noqa: BLE001 - a helper that failed to start is left out, never fatal
        return False
