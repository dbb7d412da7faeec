"""ESD (Gandikota et al., ICCV 2023, arXiv 2303.07345): negative-guidance fine-tuning.

Train eps(x_t, c) toward eps*(x_t, c_a) - eta (eps*(x_t, c) - eps*(x_t, c_a)) with eps* frozen.
ESD-x trains cross-attention only, ESD-u everything else. As measured on the toy world, the anchor
c_a is the prompt without the concept (not the empty prompt: that erased colours too), plus a
preservation term that keeps other objects' predictions where they were.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from jobs.finetune import FinetuneConfig, diff_and_restore, finetune, snapshot
from jobs.latent_pool import generate_latents, noised
from jobs.methods.interface import EraseInputs, MethodOutput, merge_hparams
from jobs.methods.targets import cross_attention_params, denoiser, non_cross_attention_params
from jobs.text_embeddings import encode

DEFAULTS = {"eta": 1.0, "steps": 150, "lr": 5e-4, "batch": 16, "preserve_weight": 1.0,
            "grad_accum": 1, "mixed_precision": "no"}
# ESD-u trains more, smaller-gradient weights: it needs a larger step (measured on the toy world).
VARIANT_DEFAULTS = {"esd-x": {}, "esd-u": {"lr": 1e-3}}


def esd_target(eps_cond: torch.Tensor, eps_anchor: torch.Tensor, eta: float) -> torch.Tensor:
    """Where the erased model's prediction should point: away from the concept, by eta."""
    return eps_anchor - eta * (eps_cond - eps_anchor)


def guided_loss(net, frozen, x0, cond, anchor, eta, gen, scheduler):
    """ESD loss on a batch; with eta = 0 and anchor images it is Concept Ablation's loss."""
    xt, _, t = noised(scheduler, x0, gen)
    with torch.no_grad():
        target = esd_target(frozen(xt, t, cond).sample, frozen(xt, t, anchor).sample, eta)
    return F.mse_loss(net(xt, t, cond).sample, target)


def preserve_loss(net, frozen, x0, cond, gen, scheduler):
    """Keep other concepts' predictions where the frozen model had them."""
    xt, _, t = noised(scheduler, x0, gen)
    with torch.no_grad():
        target = frozen(xt, t, cond).sample
    return F.mse_loss(net(xt, t, cond).sample, target)


def batch_index(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, n, (min(size, n),), generator=gen)


def run(pipe, inputs: EraseInputs, hp: dict, params: dict, x0: torch.Tensor, eta: float) -> MethodOutput:
    """Shared by ESD and CA: train `params` on the guided loss from latents x0 (aligned with the prompts)."""
    comp, net = denoiser(pipe)
    cp = inputs.prompts
    cond, anchor = encode(pipe, cp.target), encode(pipe, cp.anchor)
    keep = encode(pipe, cp.preserve) if cp.preserve and hp["preserve_weight"] > 0 else None
    keep_x0 = generate_latents(pipe, cp.preserve, inputs.seed + 1) if keep is not None else None
    frozen = copy.deepcopy(net).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(inputs.seed)
    before = snapshot(params)

    def loss_fn(step: int) -> torch.Tensor:
        i = batch_index(len(cond), hp["batch"], gen)
        loss = guided_loss(net, frozen, x0[i], cond[i], anchor[i], eta, gen, pipe.scheduler)
        if keep is not None:
            j = batch_index(len(keep), hp["batch"], gen)
            loss = loss + hp["preserve_weight"] * preserve_loss(net, frozen, keep_x0[j], keep[j], gen, pipe.scheduler)
        return loss

    cfg = FinetuneConfig(steps=int(hp["steps"]), lr=hp["lr"], grad_accum=hp["grad_accum"],
                         mixed_precision=hp["mixed_precision"], seed=inputs.seed)
    stats = finetune(net, list(params.values()), loss_fn, cfg, inputs.log)
    del frozen
    return MethodOutput("dense", diff_and_restore(comp, params, before), stats=stats)


def erase_variant(name: str, pipe, inputs: EraseInputs) -> MethodOutput:
    hp = merge_hparams(name, {**DEFAULTS, **VARIANT_DEFAULTS[name]}, inputs.hparams)
    _, net = denoiser(pipe)
    params = cross_attention_params(net) if name == "esd-x" else non_cross_attention_params(net)
    x0 = generate_latents(pipe, inputs.prompts.target, inputs.seed)
    return run(pipe, inputs, hp, params, x0, hp["eta"])


def erase(pipe, inputs: EraseInputs) -> MethodOutput:
    return erase_variant("esd-x", pipe, inputs)
