"""The erase lane: devices kept for the pipelined loop's erases, so they never queue behind gates.

    lane = EraseLane.open(gpus_per_step, cpus_per_step)   # None when there is nothing to keep
    options = lane.options() if lane else {}               # for one erase: the lane if it is free, else {}
    ref = task.options(**options).remote(...); lane.occupy(ref, options)
    lane.release(ref)                                      # when that erase ends or is cancelled

The erase chain is a pipelined campaign's critical path: each step's erase needs the candidate before
it, and the gates (every GPU but the lane's) fill the time around it. Without a lane, Ray hands a freed
GPU to whichever task asked first, and a speculative gate's shards (queued when its erase ended) take
it before the next erase: measured in benches/scheduler.py, the chain waited ~70 s of model time per
two steps. The lane is a placement group of one erase's devices; an erase runs in it when it is free,
else on the cluster like any task (a rejected step's parallel retries, all at once).
"""
from __future__ import annotations

from collections.abc import Hashable

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

LANE_READY_S = 60.0   # the longest the driver waits for the lane's devices at the start


class EraseLane:
    def __init__(self, group):
        self.group, self.holder = group, None   # holder: the ticket of the erase in the lane

    @classmethod
    def open(cls, gpus: float, cpus: float) -> EraseLane | None:
        """A lane of one erase's devices, or None: a CPU step (nothing scarce to keep) or a cluster whose
        devices cannot hold it now (then erases simply queue as tasks)."""
        if gpus <= 0:
            return None
        bundle = {k: float(v) for k, v in (("GPU", gpus), ("CPU", cpus)) if v > 0}
        group = placement_group([bundle], strategy="PACK")
        ready, _ = ray.wait([group.ready()], timeout=LANE_READY_S)
        if not ready:
            remove_placement_group(group)
            return None
        return cls(group)

    def options(self) -> dict:
        """Ray options that run the next erase in the lane if it is free; {} (the cluster) if not."""
        if self.holder is not None:
            return {}
        return {"scheduling_strategy": PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=0)}

    def occupy(self, ticket: Hashable, options: dict) -> None:
        """The erase `ticket` was started with `options`: if they were the lane's, it holds the lane."""
        if options:
            self.holder = ticket

    def release(self, ticket: Hashable) -> None:
        if self.holder == ticket:
            self.holder = None

    def close(self) -> None:
        remove_placement_group(self.group)
