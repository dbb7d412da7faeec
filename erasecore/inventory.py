"""A model's parameter counts and activation sizes: what jobs/models/inventory.py measures and the
pure memory planner (orchestrator/planning/memory_plan.py) reads. JSON round-trips."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from erasecore.catalog import get

LORA_TARGETS = get("lora").lora_targets
REFERENCE_MODELS = Path(__file__).resolve().parents[1] / "configs" / "models" / "reference_models.json"
REFERENCE_INVENTORIES = REFERENCE_MODELS.with_name("reference_inventories.json")


@dataclass(frozen=True)
class ModelInventory:
    """Parameter counts and activation sizes of one model; JSON round-trips (to_json / from_json)."""

    model: str                          # the reference as given (toyworld, a directory, a hub id)
    pipeline: str                       # pipeline class, e.g. StableDiffusionPipeline, FluxPipeline
    denoiser: str                       # the denoiser's component name: unet | transformer
    components: dict[str, int]          # component -> parameters, denoiser included
    trainable: dict[str, int]           # method -> denoiser parameters it trains (uce: 0, lora: see below)
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    lora_features: int = 0              # sum of (in + out) over LoRA-targeted layers: rank r trains r x this
    latent: list[int] = field(default_factory=list)   # the denoiser's input per sample, e.g. [4, 64, 64]
    text_tokens: int = 0
    activations: dict[str, int] = field(default_factory=dict)   # method -> elements autograd keeps per sample
    activations_checkpointed: dict[str, int] = field(default_factory=dict)   # the same, gradient checkpointing
    attention_probs: int = 0            # cross-attention probabilities per sample
    largest_block: int = 0              # parameters of the largest checkpointed block
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInventory:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
