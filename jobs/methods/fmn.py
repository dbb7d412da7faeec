"""Forget-Me-Not (Zhang et al., arXiv 2303.17591): attention re-steering.

Minimise the squared cross-attention probability mass on the concept's tokens, on noised images
of the concept, training cross-attention. Small and fast; known to be weak on objects. UNet families
only (SD, SDXL): the probe reads attn2's maps (the catalog says why not SD3).
"""
from __future__ import annotations

import torch

from jobs.models import attention_probe
from jobs.models.adapters import adapter
from jobs.training import drift_penalty
from jobs.training.finetune import batch_index, dense_delta, finetune, finetune_config, restore, snapshot, step_generator
from jobs.training.latent_pool import generate_latents
from jobs.methods.interface import EraseInputs, MethodOutput
from jobs.models.targets import cross_attention_modules, denoiser, trained_params
from jobs.models.text_embeddings import concept_positions


def attention_mass(probs: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Mean over layers of the squared attention on masked tokens; mask is (B, L)."""
    total = 0.0
    for p in probs:
        heads = p.shape[0] // mask.shape[0]
        m = mask.repeat_interleave(heads, 0)[:, None, :].to(p.dtype)
        total = total + (p * m).pow(2).sum(-1).mean()
    return total / len(probs)


def erase(pipe, inputs: EraseInputs) -> MethodOutput:
    hp = inputs.hparams
    comp, net = denoiser(pipe)
    fam, cp = adapter(pipe), inputs.prompts
    cond, mask = fam.encode(cp.target), concept_positions(pipe, cp.target, cp.words)
    x0 = generate_latents(pipe, cp.target, inputs.seed)
    params = trained_params(net, inputs.method.trains)
    modules = cross_attention_modules(net)
    store: list[torch.Tensor] = []
    previous = attention_probe.install(modules, store)
    before = snapshot(params)

    def loss_fn(step: int, model, shard) -> torch.Tensor:
        store.clear()
        gen = step_generator(inputs.seed, step)
        i = batch_index(len(cond), hp["batch"], gen)
        xt, _, t = fam.noised(x0[i], gen)
        xt, t, c, m = (shard.take(v) for v in (xt, t, cond[i], mask[i]))
        fam.predict(model, xt, t, c)
        return attention_mass(store, m)

    try:   # the probe comes off whatever happens, a parent the drift penalty cannot read included
        loss_fn = drift_penalty.with_drift(loss_fn, params, comp, inputs)
        trained = finetune(net, params, loss_fn, finetune_config(hp, inputs.seed, log_every=10),
                           inputs.parallel, inputs.log, progress=inputs.progress)
    finally:
        attention_probe.restore(modules, previous)
    restore(params, before)
    return MethodOutput("dense", dense_delta(comp, trained.values, before), stats=trained.stats)
