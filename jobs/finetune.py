"""The training loop every fine-tuning method shares: Accelerate, seeded, gradient accumulation.

Methods supply the parameters to train and a loss closure; this file owns devices, precision
and the optimizer, so the math stays in the method files.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int
    lr: float
    grad_accum: int = 1
    mixed_precision: str = "no"     # "no" | "fp16" | "bf16" (GPU)
    max_grad_norm: float = 1.0
    seed: int = 0
    log_every: int = 50


def _accelerator(cfg: FinetuneConfig):
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    cpu = not torch.cuda.is_available()
    return Accelerator(cpu=cpu, mixed_precision="no" if cpu else cfg.mixed_precision,
                       gradient_accumulation_steps=cfg.grad_accum)


def _release(accelerator) -> None:
    """Accelerate keeps process-wide state; reset it so the next step may choose other settings."""
    from accelerate.state import AcceleratorState

    accelerator.free_memory()
    AcceleratorState._reset_state(reset_partial_state=True)


def finetune(model: torch.nn.Module, params: list[torch.nn.Parameter], loss_fn: Callable[[int], torch.Tensor],
             cfg: FinetuneConfig, log=print) -> dict[str, float]:
    """Train `params` (a subset of `model`) to minimise loss_fn(step); returns timing and final loss."""
    accelerator = _accelerator(cfg)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    model, opt = accelerator.prepare(model, opt)
    model.train()
    t0, loss = time.time(), torch.tensor(0.0)
    try:
        for step in range(cfg.steps * cfg.grad_accum):
            with accelerator.accumulate(model):
                loss = loss_fn(step)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                opt.zero_grad(set_to_none=True)
            if step % cfg.log_every == 0:
                log(f"  step {step} loss {loss.item():.4f}")
    finally:
        model.eval()
        for p in params:
            p.requires_grad_(False)
        _release(accelerator)
    return {"train_seconds": time.time() - t0, "final_loss": float(loss.item())}


def snapshot(params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in params.items()}


def diff_and_restore(component: str, params: dict[str, torch.nn.Parameter],
                     before: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trained change as a dense delta; the parameters are put back as they were."""
    out = {}
    with torch.no_grad():
        for n, p in params.items():
            d = p.detach() - before[n]
            if torch.any(d != 0):
                out[f"{component}.{n}"] = d.clone()
            p.copy_(before[n])
    return out
