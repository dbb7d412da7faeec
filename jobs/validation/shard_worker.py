"""One helper of a sharded gate: its own process and GPU, the gate's pipeline, whole looks on request.

The gate's own process (jobs/step.py run_validation) draws the baseline's and the candidate's looks
together with its helpers; orchestrator/ray/shards.py runs each helper as a Ray actor and sends it
looks. A helper draws base images until the first candidate look, then stacks the same parents and
candidate the gate's process stacks, so every look is what the unsharded gate would draw.
"""
from __future__ import annotations

import numpy as np

from jobs.deltas import delta as deltas
from jobs.models.loader import load_pipeline
from jobs.training.distributed import device
from jobs.validation.observations import Observation
from jobs.validation.validator import for_request, generate
from erasecore.contracts import DeltaRef, StepRequest


class Shard:
    def __init__(self, request: StepRequest, candidate: DeltaRef):
        self.validator, self.suite = for_request(request, request.validation.judge, log=lambda *a, **k: None)
        self.pipe = load_pipeline(request.model, device=str(device()), frozen_precision=request.frozen_precision)
        self.deltas = tuple(request.parents) + (candidate,)
        self.stacked = False

    def ready(self) -> bool:
        return True

    def draw_base(self, part: list[tuple[int, int]]) -> np.ndarray:
        if self.stacked:
            raise RuntimeError("a shard draws base images only before the candidate is stacked")
        return generate(self.pipe, self.suite, part, self.validator.spec)

    def observe(self, part: list[tuple[int, int]]) -> list[Observation]:
        if not self.stacked:
            deltas.stack(self.pipe, self.deltas)
            self.stacked = True
        return self.validator.observe(self.pipe, self.suite, part)
