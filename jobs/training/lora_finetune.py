"""The LoRA fine-tune the adapter methods share (lora, spm, mace): attach a switchable adapter, train it
through the one fine-tune loop (checkpoints, worker groups and the progress file included), detach it,
and hand back its factors under delta keys.

With the adapter switched off (`adapter_off`) the network is the frozen model, so a method's targets
need no frozen copy.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from collections.abc import Iterator

import torch

from jobs.training import drift_penalty, lora_adapter
from jobs.training.finetune import LossFn, finetune, finetune_config


@dataclass
class TrainedLora:
    factors: dict[str, torch.Tensor]   # '<component>.<module>.lora_A/B.weight'
    rank: int
    alpha: float
    stats: dict[str, float]

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@contextlib.contextmanager
def adapter_off(net) -> Iterator[None]:
    """The frozen model for targets: the adapter switch lives on the inner network."""
    net.disable_adapters()
    try:
        yield
    finally:
        net.enable_adapters()


def train_lora(net, component: str, targets: list[str], loss_fn: LossFn, inputs, init="gaussian",
               log_every: int = 50) -> TrainedLora:
    """Rank and alpha from inputs.hparams; the adapter is gone from `net` afterwards, whatever happens."""
    hp = inputs.hparams
    params = lora_adapter.attach(net, hp["rank"], hp["alpha"], targets, init=init)
    try:
        loss_fn = drift_penalty.with_lora_drift(loss_fn, params, component, hp["alpha"] / hp["rank"], inputs)
        trained = finetune(net, params, loss_fn, finetune_config(hp, inputs.seed, log_every=log_every),
                           inputs.parallel, inputs.log, progress=inputs.progress)
    finally:
        lora_adapter.detach(net)
    return TrainedLora(lora_adapter.factors(trained.values, component), hp["rank"], float(hp["alpha"]), trained.stats)
