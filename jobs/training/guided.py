"""The guided fine-tune ESD and Concept Ablation share: train parameters so that the denoiser's
prediction for the concept's prompts follows a target made by a frozen copy, while a preservation
term keeps other concepts' predictions where the frozen model had them.

    target = eps*(x_t, c_a) - eta (eps*(x_t, c) - eps*(x_t, c_a))

with c the concept's prompts and c_a the same prompts without the concept. ESD uses eta > 0 on
images of the concept; CA is eta = 0 on images of the anchor. The target is a linear combination
of predictions, so it holds for noise (SD, SDXL) and flow-velocity (SD3) predictions alike.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from jobs.models.adapters import adapter
from jobs.models.targets import denoiser
from jobs.training import drift_penalty
from jobs.training.finetune import batch_index, dense_delta, finetune, finetune_config, restore, snapshot, step_generator
from jobs.training.latent_pool import generate_latents


def guided_target(eps_cond: torch.Tensor, eps_anchor: torch.Tensor, eta: float) -> torch.Tensor:
    """Where the erased model's prediction should point: away from the concept, by eta."""
    return eps_anchor - eta * (eps_cond - eps_anchor)


def guided_loss(model, frozen, fam, x0, cond, anchor, eta, gen, shard):
    """The guided loss on this worker's shard of a batch."""
    xt, _, t = fam.noised(x0, gen)
    xt, t, cond, anchor = (shard.take(v) for v in (xt, t, cond, anchor))
    with torch.no_grad():
        target = guided_target(fam.predict(frozen, xt, t, cond), fam.predict(frozen, xt, t, anchor), eta)
    return F.mse_loss(fam.predict(model, xt, t, cond), target)


def preserve_loss(model, frozen, fam, x0, cond, gen, shard):
    """Keep other concepts' predictions where the frozen model had them."""
    xt, _, t = fam.noised(x0, gen)
    xt, t, cond = (shard.take(v) for v in (xt, t, cond))
    with torch.no_grad():
        target = fam.predict(frozen, xt, t, cond)
    return F.mse_loss(fam.predict(model, xt, t, cond), target)


def run(pipe, inputs, params: dict, x0: torch.Tensor, eta: float) -> tuple[dict[str, torch.Tensor], dict]:
    """Train `params` on the guided loss from latents x0 (aligned with the prompts).

    Returns the dense delta ("<component>.<param>" -> change) and the loop's stats; `pipe` is left as it was.
    """
    hp = inputs.hparams
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

    loss_fn = drift_penalty.with_drift(loss_fn, params, comp, inputs)
    trained = finetune(net, params, loss_fn, finetune_config(hp, inputs.seed), inputs.parallel, inputs.log,
                       progress=inputs.progress)
    restore(params, before)
    return dense_delta(comp, trained.values, before), trained.stats
