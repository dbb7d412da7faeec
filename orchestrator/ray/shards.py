"""A sharded gate: the validation task's looks shared with helper actors on other GPUs.

    shards = shard_count(spec.validation.shards, spec.resources.validation_gpus)   # in the driver
    pool = ShardPool.open(request, candidate, shards - 1, cpus, gpus)             # in the validation task
    run_validation(request, candidate, spread=pool)

Each look goes to whichever member is free (the validation task itself, or a helper actor running
jobs/validation/shard_worker.Shard), and the looks come back in look order, so the validator's stop
rule is evaluated on exactly the observations of the unsharded gate after each look. When it stops
early, the looks drawn ahead are dropped (at most one per helper). Once every candidate look is handed
out, a helper with nothing left to draw is let go (its GPU goes to the next gate or erase instead of
idling through the gate's last looks), and release() lets the rest go when the validator is done; a
gate's extension (rare, a few groups) is drawn by whoever is left. A helper joins whenever it has
started (its GPU came free and its pipeline is loaded), at any look: a gate that starts while other
work holds the GPUs begins alone and speeds up as they free. It waits (up to SHARD_START_S) only for
the helpers that the devices free when it opened could take: those are loading, not queued.
A helper that dies (its process killed, its node lost) is a system failure, not the candidate's: the look
it was drawing is drawn by the validation task itself (the same call, so the same result) and the helper
leaves the pool, so the gate still ends with the unsharded report instead of failing the attempt.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

import ray
from ray.exceptions import RayActorError

SHARD_START_S = 60.0   # the longest a gate waits for helpers the free devices could take (loading)


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

    def __init__(self, actors: list, expected: int = 0):
        self.actors, self.expected = actors, expected            # expected: helpers the free devices could take
        self.starting = {a.ready.remote(): a for a in actors}   # ready() answers once the pipeline is loaded
        self.members: list = []                                  # helpers that started, in joining order
        self.let_go = 0                                          # members released before close()
        self.lost = 0                                            # members that died; their looks drawn here

    @classmethod
    def open(cls, request, candidate, helpers: int, cpus: float, gpus: float) -> ShardPool:
        from jobs.validation.shard_worker import Shard   # torch: only inside the task
        actor = ray.remote(max_restarts=0)(Shard)
        expected = _placeable(helpers, cpus, gpus)
        return cls([actor.options(num_cpus=cpus, num_gpus=gpus, name=None).remote(request, candidate)
                    for _ in range(helpers)], expected)

    def draw_base(self, looks, local: Callable) -> Generator[Any, None, None]:
        return self._run(looks, local, "draw_base")

    def observe(self, looks, local: Callable) -> Generator[Any, None, None]:
        return self._run(looks, local, "observe", let_go=True)

    def joined(self) -> int:
        """Helpers that have started so far (those let go included)."""
        self._poll()
        return len(self.members) + self.let_go + self.lost

    def release(self) -> None:
        """The validator needs no more looks: every helper's GPU goes back now, not when the task ends."""
        self.close()

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.let_go += len(self.members)
        self.members, self.starting = [], {}

    def _poll(self) -> None:
        """Helpers whose start finished since the last look join; one that failed to start never does."""
        if not self.starting:
            return
        ready, _ = ray.wait(list(self.starting), num_returns=len(self.starting), timeout=0)
        for ref in ready:
            actor = self.starting.pop(ref)
            if _started(ref):
                self.members.append(actor)

    def _await_placed(self) -> None:
        """Once, before the first look: wait (up to SHARD_START_S) for the helpers that free devices could take
        when the pool opened; they are loading their pipeline. The others join whenever they start."""
        if self.expected and self.starting:
            ray.wait(list(self.starting), num_returns=min(self.expected, len(self.starting)), timeout=SHARD_START_S)
        self.expected = 0

    def _run(self, looks, local: Callable, method: str, let_go: bool = False) -> Generator[Any, None, None]:
        """Each look to whichever member is free: this process draws the look it needs next unless a helper
        already has it, and every started, idle helper takes the next look nobody has (at most one each).
        With let_go, once every look is handed out, an idle helper is released."""
        self._await_placed()
        inflight: dict[int, tuple[Any, Any]] = {}   # look index -> (ref, helper)
        handed = 0                                  # looks before it are drawn or in flight
        for i, part in enumerate(looks):
            self._poll()
            here = i >= handed
            handed = max(handed, i + 1)
            busy = {id(helper) for _, helper in inflight.values()}
            for helper in self.members:
                if handed < len(looks) and id(helper) not in busy:
                    inflight[handed] = (getattr(helper, method).remote(looks[handed]), helper)
                    handed += 1
            if let_go and handed == len(looks):
                self._let_go({id(helper) for _, helper in inflight.values()})
            yield local(part) if here else self._fetch(inflight.pop(i), part, local)
        if let_go:
            self._let_go(set())

    def _fetch(self, sent: tuple[Any, Any], part, local: Callable) -> Any:
        """A helper's look; if the helper died meanwhile, the look is drawn here and the helper leaves the pool."""
        ref, helper = sent
        try:
            return ray.get(ref)
        except RayActorError:   # the helper's process or node died: never the candidate's fault
            self.members = [h for h in self.members if h is not helper]
            self.lost += 1
            return local(part)

    def _let_go(self, busy: set[int]) -> None:
        """Release the started helpers not in `busy`, and the ones still starting (no look is left for them)."""
        for actor in list(self.starting.values()) + [h for h in self.members if id(h) not in busy]:
            ray.kill(actor)
        self.let_go += sum(id(h) not in busy for h in self.members)
        self.members = [h for h in self.members if id(h) in busy]
        self.starting = {}


def _placeable(helpers: int, cpus: float, gpus: float) -> int:
    """How many helpers the cluster's free devices could start now (each asks cpus and gpus)."""
    free = ray.available_resources()
    fits = [free.get(name, 0.0) / need for name, need in (("GPU", gpus), ("CPU", cpus)) if need > 0]
    return min(helpers, math.floor(min(fits) + 1e-9)) if fits else helpers


def _started(ref) -> bool:
    try:
        return ray.get(ref, timeout=0) is True
    except Exception:  # noqa: BLE001 - a helper that failed to start is left out, never fatal
        return False
