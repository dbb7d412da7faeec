"""Who draws a gate's looks: this process alone, or shards (orchestrator/ray/shards.py) on other GPUs.

The validator hands its looks (batches of keys, in key order) to a Spread and consumes what comes
back in the same order: base images for the baseline, observations for the candidate. A Spread only
decides where each look is drawn; every look is drawn whole by one process, with the same call, so a
sharded gate sees exactly the images and observations of an unsharded one (the stop rule and the
report stay the validator's, on the merged observations). Plain Python: no Ray.
"""
from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any, Protocol

Look = list[tuple[int, int]]


class Spread(Protocol):
    def draw_base(self, looks: list[Look], local: Callable[[Look], Any]) -> Iterator[Any]:
        """Base-model images of each look, in order (before any delta is stacked)."""

    def observe(self, looks: list[Look], local: Callable[[Look], Any]) -> Generator[Any, None, None]:
        """The candidate's observations of each look, in order; closing it drops looks drawn ahead."""

    def release(self) -> None:
        """No more looks will be asked for: the shards' devices can go."""


class InProcess:
    """Every look drawn here, one after another: the unsharded gate."""

    def draw_base(self, looks: list[Look], local: Callable[[Look], Any]) -> Iterator[Any]:
        return (local(part) for part in looks)

    def observe(self, looks: list[Look], local: Callable[[Look], Any]) -> Generator[Any, None, None]:
        return (local(part) for part in looks)

    def release(self) -> None:
        pass   # nothing is held beyond this process
