"""What every erasure method takes and returns.

A method is `erase(pipe, inputs) -> MethodOutput`. It must leave `pipe` as it found it: the change
lives only in the output (dense additive differences, or LoRA factors), which becomes the delta.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.concept_prompts import ConceptPrompts
from jobs.distributed import Parallel


@dataclass(frozen=True)
class EraseInputs:
    concept: str
    prompts: ConceptPrompts
    hparams: dict[str, Any]
    seed: int = 0
    log: Any = print
    parallel: Parallel = Parallel()   # one process unless the step runs as a worker group


@dataclass
class MethodOutput:
    kind: str                       # "dense" | "lora"
    tensors: dict[str, Any]         # dense: "unet.<param>" -> change; lora: "unet.<module>.lora_A/B.weight"
    rank: int = 0
    alpha: float = 0.0
    stats: dict[str, float] = field(default_factory=dict)


class MethodConfigError(ValueError):
    """An unknown hyperparameter, or a method that cannot apply to this model family."""


def merge_hparams(method: str, defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise MethodConfigError(f"method {method!r} has no hyperparameter {unknown[0]!r}; "
                                f"known: {', '.join(sorted(defaults))}")
    return {**defaults, **given}
