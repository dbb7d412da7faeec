"""A regulariser toward the base weights for long campaigns (sequential erasure; CUIG, ICLR 2026).

Step k fine-tunes base + delta 1 + ... + delta k-1. Each step's own loss is blind to how far the
model already moved, so fine-tunes collapse after a few requests from the accumulated drift. With
drift_l2 / drift_l1 > 0 the loss gains

    (drift_l2 * sum((theta - theta_base)^2) + drift_l1 * sum(|theta - theta_base|)) / n

over the n trained weights: a mean over elements, so a weight means the same for a few attention
projections (esd-x) as for the whole denoiser (esd-u). theta_base is the BASE model's value, before any
committed delta of the campaign: the parents' accumulated change is read back from their delta files
(EraseInputs.parents) for the trained keys only and taken off the weights as stacked. So at step 0 the
penalty already pulls the parents' change back, not just this step's. For the LoRA methods theta is the
wrapped weight: theta - theta_base = parents' change + scale * B @ A.

Both weights 0 (the default) returns the method's own closure: no extra op, no RNG, the same delta bit
for bit. Needs whole parameters in the closure: DeepSpeed ZeRO-3 partitions them and is refused.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from erasecore.contracts import DeltaRef
from jobs.deltas.delta import dense_change, load_delta
from jobs.training.finetune import LossFn

Pair = tuple[torch.nn.Parameter, torch.nn.Parameter]   # a LoRA module's (A, B)


def weights(hp: dict) -> tuple[float, float]:
    """(drift_l2, drift_l1); methods whose catalog entry lacks them (mace) read as off."""
    return float(hp.get("drift_l2", 0.0)), float(hp.get("drift_l1", 0.0))


def parent_change(parents: Sequence[DeltaRef], keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """The change the committed parents made to `keys`, summed (float32, CPU; keys no parent touched absent).

    One delta in memory at a time (sha256 checked again, as stacking did), only `keys` kept."""
    wanted, acc = set(keys), {}
    for ref in parents:
        tensors, meta = load_delta(ref.path, ref.sha256)
        for key, change in dense_change(tensors, meta).items():
            if key in wanted:
                acc[key] = acc[key] + change if key in acc else change
    return acc


def base_values(params: dict[str, torch.nn.Parameter], component: str,
                parents: Sequence[DeltaRef]) -> dict[str, torch.Tensor]:
    """theta_base of each trained parameter (float32, on its device): its value as stacked minus the parents'."""
    acc = parent_change(parents, (f"{component}.{n}" for n in params))
    out = {}
    for n, p in params.items():
        value = p.detach().float().clone()
        if (change := acc.get(f"{component}.{n}")) is not None:
            value -= change.to(value.device)
        out[n] = value
    return out


def _term(d: torch.Tensor, l2: float, l1: float) -> torch.Tensor:
    """The summed penalty of one tensor's drift; a zero weight adds no op."""
    if l1 == 0:
        return l2 * d.pow(2).sum()
    if l2 == 0:
        return l1 * d.abs().sum()
    return l2 * d.pow(2).sum() + l1 * d.abs().sum()


def _whole(name: str, p: torch.Tensor, shape: torch.Size) -> None:
    if p.shape != shape:   # ZeRO-3 leaves only this rank's partition outside the forward
        raise ValueError(f"drift_l2/drift_l1: parameter {name!r} is partitioned ({tuple(p.shape)} of "
                         f"{tuple(shape)}); DeepSpeed ZeRO-3 cannot take the drift penalty, use ZeRO-1/2 or DDP")


def dense_penalty(params: dict[str, torch.nn.Parameter], base: dict[str, torch.Tensor],
                  l2: float, l1: float) -> torch.Tensor:
    """The mean penalty of the trained parameters' drift from base."""
    total, n = 0.0, 0
    for name, p in params.items():
        _whole(name, p, base[name].shape)
        total = total + _term(p.float() - base[name], l2, l1)
        n += p.numel()
    return total / n


def with_drift(loss_fn: LossFn, params: dict[str, torch.nn.Parameter], component: str, inputs) -> LossFn:
    """loss_fn plus the drift penalty of dense `params` ("<component>.<name>" in the deltas); loss_fn itself when off."""
    l2, l1 = weights(inputs.hparams)
    if l2 == 0 and l1 == 0:
        return loss_fn
    base = base_values(params, component, inputs.parents)

    def drifted(step: int, model, shard) -> torch.Tensor:
        return loss_fn(step, model, shard) + dense_penalty(params, base, l2, l1)

    return drifted


# ---- LoRA: theta is the wrapped weight, its drift the parents' change plus scale * B @ A ----------------

def lora_pairs(params: dict[str, torch.nn.Parameter]) -> dict[str, Pair]:
    """module -> (A, B) from peft's parameter names ('<module>.lora_A.<adapter>.weight')."""
    out: dict[str, dict[str, torch.nn.Parameter]] = {}
    for name, p in params.items():
        module, _, rest = name.partition(".lora_")
        out.setdefault(module, {})[rest.split(".")[0]] = p
    return {m: (ab["A"], ab["B"]) for m, ab in out.items()}


def lora_penalty(pairs: dict[str, Pair], shapes: dict[str, tuple[torch.Size, torch.Size]], scale: float,
                 acc: dict[str, torch.Tensor], l2: float, l1: float) -> torch.Tensor:
    """The mean penalty of the wrapped weights' drift; `acc` holds the parents' change of the modules they touched."""
    total, n = 0.0, 0
    for module, (a, b) in pairs.items():
        _whole(f"{module}.lora_A", a, shapes[module][0])
        _whole(f"{module}.lora_B", b, shapes[module][1])
        d = scale * (b.float() @ a.float())
        if module in acc:
            d = d + acc[module]
        total = total + _term(d, l2, l1)
        n += d.numel()
    return total / n


def with_lora_drift(loss_fn: LossFn, params: dict[str, torch.nn.Parameter], component: str, scale: float,
                    inputs) -> LossFn:
    """loss_fn plus the drift penalty of the LoRA-wrapped weights; loss_fn itself when off."""
    l2, l1 = weights(inputs.hparams)
    if l2 == 0 and l1 == 0:
        return loss_fn
    pairs = lora_pairs(params)
    shapes = {m: (a.shape, b.shape) for m, (a, b) in pairs.items()}   # whole now, before any ZeRO-3 partitioning
    changes = parent_change(inputs.parents, (f"{component}.{m}.weight" for m in pairs))
    acc = {m: changes[f"{component}.{m}.weight"].to(a.device) for m, (a, _) in pairs.items()
           if f"{component}.{m}.weight" in changes}

    def drifted(step: int, model, shard) -> torch.Tensor:
        return loss_fn(step, model, shard) + lora_penalty(pairs, shapes, scale, acc, l2, l1)

    return drifted
