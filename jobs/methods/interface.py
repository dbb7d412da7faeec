"""What every erasure method takes and returns.

A method is `erase(pipe, inputs) -> MethodOutput`. It must leave `pipe` as it found it: the change
lives only in the output (dense additive differences, or LoRA factors), which becomes the delta.
The registry hands it inputs.hparams already resolved over its catalog defaults, and its entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.training.concept_prompts import ConceptPrompts
from jobs.training.distributed import Parallel
from erasecore.catalog import MethodEntry
from erasecore.contracts import DeltaRef


@dataclass(frozen=True)
class EraseInputs:
    concept: str
    prompts: ConceptPrompts
    hparams: dict[str, Any]
    seed: int = 0
    log: Any = print
    parallel: Parallel = Parallel()   # one process unless the step runs as a worker group
    progress: Any = None              # a ProgressWriter for the fine-tune's "train" records (None: none)
    method: MethodEntry | None = None   # set by the registry
    # The committed deltas stacked on the base before this erase: how the drift penalty finds the base's weights.
    parents: tuple[DeltaRef, ...] = ()


@dataclass
class MethodOutput:
    kind: str                       # "dense" | "lora"
    tensors: dict[str, Any]         # dense: "unet.<param>" -> change; lora: "unet.<module>.lora_A/B.weight"
    rank: int = 0
    alpha: float = 0.0
    stats: dict[str, float] = field(default_factory=dict)
