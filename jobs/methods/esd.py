"""ESD (Gandikota et al., ICCV 2023, arXiv 2303.07345): negative-guidance fine-tuning.

Train eps(x_t, c) toward eps*(x_t, c_a) - eta (eps*(x_t, c) - eps*(x_t, c_a)) with eps* frozen.
ESD-x trains text-facing attention only (UNet attn2; SD3's joint-attention text projections), ESD-u
everything else. The target is a linear combination of predictions, so it holds for noise (SD, SDXL)
and flow-velocity (SD3) predictions alike. As measured on the toy world, the anchor
c_a is the prompt without the concept (not the empty prompt: that erased colours too), plus a
preservation term that keeps other objects' predictions where they were.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from jobs.family_adapters import adapter
from jobs.finetune import FinetuneConfig, dense_delta, finetune, restore, snapshot, step_generator
from jobs.latent_pool import generate_latents
from jobs.methods.interface import EraseInputs, MethodOutput, merge_hparams
from jobs.methods.targets import cross_attention_params, denoiser, non_cross_attention_params

DEFAULTS = {"eta": 1.0, "steps": 150, "lr": 5e-4, "batch": 16, "preserve_weight": 1.0,
            "grad_accum": 1, "mixed_precision": "no"}
# ESD-u trains more, smaller-gradient weights: it needs a larger step (measured on the toy world).
VARIANT_DEFAULTS = {"esd-x": {}, "esd-u": {"lr": 1e-3}}


def esd_target(eps_cond: torch.Tensor, eps_anchor: torch.Tensor, eta: float) -> torch.Tensor:
    """Where the erased model's prediction should point: away from the concept, by eta."""
    return eps_anchor - eta * (eps_cond - eps_anchor)


def guided_loss(model, frozen, fam, x0, cond, anchor, eta, gen, shard):
    """ESD loss on this worker's shard of a batch; with eta = 0 and anchor images it is CA's loss."""
    xt, _, t = fam.noised(x0, gen)
    xt, t, cond, anchor = (shard.take(v) for v in (xt, t, cond, anchor))
    with torch.no_grad():
        target = esd_target(fam.predict(frozen, xt, t, cond), fam.predict(frozen, xt, t, anchor), eta)
    return F.mse_loss(fam.predict(model, xt, t, cond), target)


def preserve_loss(model, frozen, fam, x0, cond, gen, shard):
    """Keep other concepts' predictions where the frozen model had them."""
    xt, _, t = fam.noised(x0, gen)
    xt, t, cond = (shard.take(v) for v in (xt, t, cond))
    with torch.no_grad():
        target = fam.predict(frozen, xt, t, cond)
    return F.mse_loss(fam.predict(model, xt, t, cond), target)


def batch_index(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """A global batch of `size` prompt indices (with replacement, so every worker count divides it)."""
    return torch.randint(0, n, (size,), generator=gen)


def run(pipe, inputs: EraseInputs, hp: dict, params: dict, x0: torch.Tensor, eta: float) -> MethodOutput:
    """Shared by ESD and CA: train `params` on the guided loss from latents x0 (aligned with the prompts)."""
    comp, net = denoiser(pipe)
    fam, cp = adapter(pipe), inputs.prompts
    cond, anchor = fam.encode(cp.target), fam.encode(cp.anchor)
    keep = fam.encode(cp.preserve) if cp.preserve and hp["preserve_weight"] > 0 else None
    keep_x0 = generate_latents(pipe, cp.preserve, inputs.seed + 1) if keep is not None else None
    frozen = copy.deepcopy(net).eval().requires_grad_(False)
    before = snapshot(params)

    def loss_fn(step: int, model, shard) -> torch.Tensor:
        gen = step_generator(inputs.seed, step)
        i = batch_index(len(cond), hp["batch"], gen)
        loss = guided_loss(model, frozen, fam, x0[i], cond[i], anchor[i], eta, gen, shard)
        if keep is not None:
            j = batch_index(len(keep), hp["batch"], gen)
            loss = loss + hp["preserve_weight"] * preserve_loss(model, frozen, fam, keep_x0[j], keep[j], gen, shard)
        return loss

    trained = finetune(net, params, loss_fn, finetune_config(hp, inputs.seed), inputs.parallel, inputs.log)
    restore(params, before)
    return MethodOutput("dense", dense_delta(comp, trained.values, before), stats=trained.stats)


def finetune_config(hp: dict, seed: int, log_every: int = 50) -> FinetuneConfig:
    return FinetuneConfig(steps=int(hp["steps"]), lr=hp["lr"], batch=int(hp["batch"]), grad_accum=hp["grad_accum"],
                          mixed_precision=hp["mixed_precision"], seed=seed, log_every=log_every)


def erase_variant(name: str, pipe, inputs: EraseInputs) -> MethodOutput:
    hp = merge_hparams(name, {**DEFAULTS, **VARIANT_DEFAULTS[name]}, inputs.hparams)
    _, net = denoiser(pipe)
    params = cross_attention_params(net) if name == "esd-x" else non_cross_attention_params(net)
    x0 = generate_latents(pipe, inputs.prompts.target, inputs.seed)
    return run(pipe, inputs, hp, params, x0, hp["eta"])


def erase(pipe, inputs: EraseInputs) -> MethodOutput:
    return erase_variant("esd-x", pipe, inputs)
