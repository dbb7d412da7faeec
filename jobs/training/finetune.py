"""The training loop every fine-tuning method shares: Accelerate, seeded, gradient accumulation,
one process or a data-parallel group (DDP, or DeepSpeed ZeRO 1-3 through Accelerate's plugin).

Methods supply the parameters to train and a loss closure `loss_fn(step, model, shard)`: it must
draw its randomness from the step number alone (so a resumed step replays the same batches), run
the forward through `model` (the wrapped network: DDP and DeepSpeed hook their gradient exchange
there) and keep only `shard.take(...)` of each global-batch tensor. This file owns devices,
precision, the optimizer and checkpoints, so the math stays in the method files.
"""
from __future__ import annotations

import contextlib
import copy
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from jobs.training import distributed
from jobs.training.distributed import Parallel, Shard
from erasecore.phase_progress import NullProgress, ProgressWriter

LossFn = Callable[[int, torch.nn.Module, Shard], torch.Tensor]


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int
    lr: float
    batch: int = 1                  # the global batch (all workers together)
    grad_accum: int = 1
    mixed_precision: str = "no"     # "no" | "fp16" | "bf16" (GPU)
    max_grad_norm: float = 1.0
    seed: int = 0
    log_every: int = 50
    progress_every: int = 0         # optimizer steps between progress records (0: steps // 100, at least 1)


@dataclass
class Trained:
    values: dict[str, torch.Tensor]   # the trained parameters' final values (full, on CPU), by name
    stats: dict[str, float]


def step_generator(seed: int, step: int) -> torch.Generator:
    """The randomness of one training step: a function of (seed, step) only, so resuming replays it."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def finetune_config(hp: dict, seed: int, log_every: int = 50) -> FinetuneConfig:
    """The loop's settings from a method's resolved hyperparameters (steps, lr, batch, grad_accum, precision)."""
    return FinetuneConfig(steps=int(hp["steps"]), lr=hp["lr"], batch=int(hp["batch"]), grad_accum=hp["grad_accum"],
                          mixed_precision=hp["mixed_precision"], seed=seed, log_every=log_every)


def batch_index(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """A global batch of `size` prompt indices (with replacement, so every worker count divides it)."""
    return torch.randint(0, n, (size,), generator=gen)


def _accelerator(cfg: FinetuneConfig, parallel: Parallel):
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    cpu = not torch.cuda.is_available()
    precision = "no" if cpu else cfg.mixed_precision
    if parallel.strategy != "deepspeed":
        return Accelerator(cpu=cpu, mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum)
    from accelerate.utils import DeepSpeedPlugin, InitProcessGroupKwargs

    # Accelerator(cpu=True) would silently drop DeepSpeed: on CPU, DeepSpeed's own accelerator picks gloo.
    plugin = DeepSpeedPlugin(hf_ds_config=_deepspeed_config(parallel.spec.deepspeed_config, cfg, precision))
    return Accelerator(deepspeed_plugin=plugin, mixed_precision=precision,
                       gradient_accumulation_steps=cfg.grad_accum,
                       kwargs_handlers=[InitProcessGroupKwargs(backend="gloo" if cpu else "nccl")])


def _deepspeed_config(base: dict, cfg: FinetuneConfig, precision: str) -> dict:
    """Fill the config's "auto" values from the method: no dataloader is prepared to infer them."""
    ds = copy.deepcopy(base) or {"zero_optimization": {"stage": 2}}
    ds["train_micro_batch_size_per_gpu"] = max(1, cfg.batch // distributed.world_size())
    ds["gradient_accumulation_steps"] = cfg.grad_accum
    ds["gradient_clipping"] = cfg.max_grad_norm
    ds["bf16"] = {"enabled": precision == "bf16"}
    ds["fp16"] = {"enabled": precision == "fp16"}
    ds.setdefault("zero_allow_untested_optimizer", True)
    return ds


def _zero3(accelerator) -> bool:
    plugin = accelerator.state.deepspeed_plugin
    return plugin is not None and plugin.zero_stage == 3


def _release(accelerator) -> None:
    """Accelerate keeps process-wide state; reset it so the next step may choose other settings."""
    from accelerate.state import AcceleratorState

    accelerator.free_memory()
    AcceleratorState._reset_state(reset_partial_state=True)


def finetune(model: torch.nn.Module, params: dict[str, torch.nn.Parameter], loss_fn: LossFn,
             cfg: FinetuneConfig, parallel: Parallel = Parallel(), log=print,
             progress: ProgressWriter | None = None) -> Trained:
    """Train `params` (a subset of `model`) to minimise loss_fn; returns their final values and stats.

    Every cfg.progress_every optimizer steps (and the first and last), `progress` gets a "train" record: steps
    done, loss, lr, gradient norm (the one clipping measured anyway), steps/s, samples/s, peak memory. It draws
    no randomness and changes no value: on a GPU, reading the loss and the norm waits for that step's kernels
    (as the text log does every log_every steps), which costs time, not results.
    """
    progress = progress or NullProgress()
    shard = distributed.shard()
    if cfg.batch % shard.world:
        raise ValueError(f"batch {cfg.batch} does not split over {shard.world} workers; "
                         f"make it a multiple of resources.num_workers")
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    if parallel.spec.gradient_checkpointing and hasattr(model, "enable_gradient_checkpointing"):
        model.enable_gradient_checkpointing()
    accelerator = _accelerator(cfg, parallel)
    opt = torch.optim.AdamW(list(params.values()), lr=cfg.lr, weight_decay=0.0)
    wrapped, opt = accelerator.prepare(model, opt)
    start = _resume(parallel, accelerator, log)
    log(f"  finetune: {accelerator.distributed_type.value} on {accelerator.device}, {len(params)} tensors "
        f"({sum(p.numel() for p in params.values())} weights), {type(wrapped).__name__}, "
        f"global batch {cfg.batch} = {shard.world} x {cfg.batch // shard.world}, steps {start}..{cfg.steps}")
    wrapped.train()
    t0, loss = time.time(), torch.tensor(0.0)
    every = cfg.progress_every or max(1, cfg.steps // 100)
    try:
        for step in range(start, cfg.steps):
            loss, norm = _optimizer_step(accelerator, wrapped, opt, params, loss_fn, step, cfg, shard)
            if step % cfg.log_every == 0:
                log(f"  step {step} loss {loss.item():.4f}")
            if progress.enabled and ((step + 1) % every == 0 or step + 1 == cfg.steps or step == start):
                _report(progress, accelerator, wrapped, opt, cfg, step, start, t0, loss, norm)
            if _checkpoint_due(parallel, step, cfg.steps):
                _checkpoint(parallel, accelerator, step, float(loss.item()))
        values = _final_values(accelerator, params)
    finally:
        wrapped.eval()
        for p in params.values():
            p.requires_grad_(False)
        if parallel.spec.gradient_checkpointing and hasattr(model, "disable_gradient_checkpointing"):
            model.disable_gradient_checkpointing()
        _release(accelerator)
    return Trained(values, {"train_seconds": time.time() - t0, "final_loss": float(loss.item()),
                            "resumed_from_step": float(start), "workers": float(shard.world)})


def _optimizer_step(accelerator, wrapped, opt, params, loss_fn, step, cfg, shard):
    """One optimizer step of cfg.grad_accum micro-steps (numbered so a resume replays them).

    Returns the last micro-step's loss and the gradient norm the clipping measured (None under DeepSpeed,
    which clips inside its engine: _report asks the engine)."""
    norm = None
    for micro in range(cfg.grad_accum):
        with accelerator.accumulate(wrapped):
            with _autocast(accelerator, cfg):
                loss = loss_fn(step * cfg.grad_accum + micro, wrapped, shard)
            accelerator.backward(loss)
            if accelerator.sync_gradients and accelerator.state.deepspeed_plugin is None:
                norm = accelerator.clip_grad_norm_(list(params.values()), cfg.max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
    return loss.detach(), norm


def _report(progress: ProgressWriter, accelerator, wrapped, opt, cfg: FinetuneConfig, step: int, start: int,
            t0: float, loss: torch.Tensor, norm) -> None:
    """One "train" record (rank 0 only: the others' writers are disabled). Reads values, changes nothing."""
    if norm is None and hasattr(wrapped, "get_global_grad_norm"):   # DeepSpeed's engine keeps its own
        norm = wrapped.get_global_grad_norm()
    try:
        lr = float(opt.param_groups[0]["lr"])
    except (AttributeError, IndexError, KeyError, TypeError):
        lr = None
    seconds = max(time.time() - t0, 1e-9)
    done = step + 1
    progress.write("train", step=done, total=cfg.steps, loss=float(loss.item()), lr=lr,
                   grad_norm=float(norm) if norm is not None else None,
                   steps_per_s=round((done - start) / seconds, 4),
                   samples_per_s=round((done - start) * cfg.batch * cfg.grad_accum / seconds, 3),
                   peak_mem_mb=distributed.peak_memory_mb(accelerator.device))


def _autocast(accelerator, cfg: FinetuneConfig):
    """DeepSpeed holds the trained net in the half dtype but, unlike Accelerate's DDP, casts no inputs."""
    if accelerator.state.deepspeed_plugin is None or cfg.mixed_precision == "no" or accelerator.device.type == "cpu":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if cfg.mixed_precision == "bf16" else torch.float16
    return torch.autocast(accelerator.device.type, dtype=dtype)


def _final_values(accelerator, params) -> dict[str, torch.Tensor]:
    """Full values of the trained parameters (ZeRO-3 holds only a partition of each: gather it)."""
    if _zero3(accelerator):
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(params.values()), modifier_rank=None):
            return {n: p.detach().cpu().clone() for n, p in params.items()}
    return {n: p.detach().cpu().clone() for n, p in params.items()}


# ---- the step's own checkpoints (a restarted worker group resumes from the last one) ------------

STEP_FILE = "finetune_step.json"   # the last finished step, next to Accelerate's save_state files


def _checkpoint_due(parallel: Parallel, step: int, steps: int) -> bool:
    every = parallel.spec.checkpoint_every
    return parallel.checkpoints is not None and (step + 1) % every == 0 and step + 1 < steps


def _checkpoint(parallel: Parallel, accelerator, step: int, loss: float) -> None:
    """Accelerate's own state on every rank (collective under DeepSpeed): model weights (safetensors), the
    optimizer (DDP: optimizer.bin; DeepSpeed: each rank's ZeRO partition), RNG per rank; plus the step as JSON.

    Each rank writes into its own directory and hands it to the store, which keeps every rank's files
    (Ray Train merges the workers' directories into one checkpoint)."""
    with tempfile.TemporaryDirectory(prefix=f"finetune_ckpt_rank{distributed.rank()}_") as tmp:
        accelerator.save_state(tmp)
        if distributed.is_main():
            (Path(tmp) / STEP_FILE).write_text(json.dumps({"step": step, "loss": loss}))
        parallel.checkpoints.save(step, Path(tmp), {"step": step, "loss": loss})


def _resume(parallel: Parallel, accelerator, log) -> int:
    """The first step to run: 0, or the one after the last checkpoint, whose state (trained parameters,
    optimizer moments, also ZeRO's partitions) is loaded into the prepared model and optimizer."""
    latest = parallel.checkpoints.latest() if parallel.checkpoints is not None else None
    if latest is None:
        return 0
    step = int(json.loads((Path(latest) / STEP_FILE).read_text())["step"])
    accelerator.load_state(str(latest))
    log(f"  resumed from checkpoint at step {step} ({latest})")
    return step + 1


def snapshot(params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in params.items()}


def dense_delta(component: str, trained: dict[str, torch.Tensor], before: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
    """The trained change as a dense delta (parameters that did not move are left out)."""
    out = {}
    for n, value in trained.items():
        d = value - before[n]
        if torch.any(d != 0):
            out[f"{component}.{n}"] = d
    return out


def restore(params: dict[str, torch.nn.Parameter], before: dict[str, torch.Tensor]) -> None:
    """Put the parameters back as they were (ZeRO-3 leaves them partitioned: the worker drops its model)."""
    with torch.no_grad():
        for n, p in params.items():
            if p.numel() == before[n].numel():
                p.copy_(before[n].to(p.device))
