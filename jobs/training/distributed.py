"""Where a fine-tune runs: one process, or one worker of a data-parallel group (DDP or DeepSpeed ZeRO).

Worker code: the process group is set up by whoever launched the workers (Ray Train, torchrun);
this module only reads the standard environment (RANK, WORLD_SIZE, LOCAL_RANK) and never imports Ray.

Data parallelism here is exact: every worker draws the same global batch (same seeded generator)
and keeps its own contiguous slice, so averaging the workers' gradients gives the gradient of the
global batch, and N workers train the same delta as one worker at the same global batch.
"""
from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from erasecore.contracts import ParallelSpec


class Checkpoints(Protocol):
    """Where a step keeps its own progress so a restarted worker group resumes it (Ray Train's, or none)."""

    def latest(self) -> Path | None: ...

    def save(self, step: int, directory: Path, metrics: dict) -> None:
        """Called by every worker, each with its own directory holding its share of the checkpoint (under
        DeepSpeed every rank writes its own ZeRO partition); the store must keep all ranks' files, merged into
        the one directory latest() returns (distinct ranks write distinct file names)."""


@dataclass(frozen=True)
class Shard:
    """This worker's slice of a global batch."""

    rank: int = 0
    world: int = 1

    def take(self, t: torch.Tensor) -> torch.Tensor:
        n = t.shape[0]
        if n % self.world:
            raise ValueError(f"a global batch of {n} does not split over {self.world} workers; "
                             f"make the method's batch a multiple of resources.num_workers")
        size = n // self.world
        return t[self.rank * size:(self.rank + 1) * size]


@dataclass(frozen=True)
class Parallel:
    """The fine-tune's distribution: the request's ParallelSpec plus this worker's checkpoint store."""

    spec: ParallelSpec = ParallelSpec()
    checkpoints: Checkpoints | None = None

    @property
    def strategy(self) -> str:
        return self.spec.strategy if world_size() > 1 or self.spec.strategy == "deepspeed" else "single"


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def shard() -> Shard:
    return Shard(rank(), world_size())


def is_main() -> bool:
    return rank() == 0


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


def peak_memory_mb(on: torch.device | None = None) -> float:
    """GPU: the most memory torch has allocated on the device; CPU: this process's peak resident set (MiB)."""
    on = on if on is not None else device()
    if on.type == "cuda":
        return round(torch.cuda.max_memory_allocated(on) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)   # Linux reports KiB


def describe() -> str:
    """What this worker was given: device ordinals go wrong silently, so every worker logs it."""
    return (f"rank {rank()}/{world_size()} LOCAL_RANK={os.environ.get('LOCAL_RANK', '')!r} "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')!r} device={device()} "
            f"process_group={'on' if torch.distributed.is_initialized() else 'off'} pid={os.getpid()}")


def release() -> None:
    """End of a distributed step: all workers meet, then the process group is torn down."""
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def release_all() -> None:
    """Whatever a finished step may have left in this process: a process group, cached CUDA memory."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def leftovers() -> list[str]:
    """What a finished step left behind in this process: a live process group, CUDA memory, child processes."""
    found = []
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        found.append("a torch.distributed process group is still initialized")
    if torch.cuda.is_available() and torch.cuda.memory_allocated() > 0:
        found.append(f"{torch.cuda.memory_allocated() / 2**20:.0f} MiB of CUDA memory still allocated")
    children = _live_children()
    if children:
        found.append(f"child processes still running: {', '.join(map(str, children))}")
    return found


def _live_children() -> list[int]:
    try:
        import psutil
    except ImportError:
        return []
    return [c.pid for c in psutil.Process().children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE]
