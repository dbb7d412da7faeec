"""SPM (Lyu et al., CVPR 2024, arXiv 2312.16145): a rank-1 "membrane" LoRA that erases one concept.

The adapter sits on every attention and feed-forward Linear inside the denoiser's transformer blocks
(jobs/models/targets.py: transformer_block_linears). Loss, with eps* the same network with the
adapter switched off (no frozen copy):

    MSE(eps(x_t, c), eps*(x_t, c_a) - eta (eps*(x_t, c) - eps*(x_t, c_a)))          erase, ESD-style
    + anchor_weight * MSE(eps(x_t', c_k), eps*(x_t', c_k))                           latent anchoring

on noised images of the concept (x_t) and of the preserve prompts (x_t', c_k). Published: rank 1,
alpha 1, the empty prompt as c_a with eta 1, anchors sampled from a large vocabulary at weight 1000,
3000 iterations at lr 1e-4, batch 1 (SD 1.4). Here c_a is the prompt without the concept (as this
project's ESD) and the anchors are the concept set's preserve prompts. Facilitated transport (scaling
the membrane down at inference for prompts far from the concept) is not implemented: the delta is a
plain LoRA, applied at full strength. Output: LoRA factors (exported as kohya/ComfyUI LoRA like `lora`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from jobs.methods.interface import EraseInputs, MethodOutput
from jobs.models.adapters import adapter
from jobs.models.targets import denoiser, transformer_block_linears
from jobs.training.finetune import batch_index, step_generator
from jobs.training.guided import guided_target
from jobs.training.latent_pool import generate_latents
from jobs.training.lora_finetune import adapter_off, train_lora


def erase(pipe, inputs: EraseInputs) -> MethodOutput:
    hp = inputs.hparams
    comp, net = denoiser(pipe)
    fam, cp = adapter(pipe), inputs.prompts
    cond, anchor = fam.encode(cp.target), fam.encode(cp.anchor)
    keep_prompts = cp.preserve or cp.anchor
    keep = fam.encode(keep_prompts)
    x0 = generate_latents(pipe, cp.target, inputs.seed)
    keep_x0 = generate_latents(pipe, keep_prompts, inputs.seed + 1)

    def loss_fn(step: int, model, shard) -> torch.Tensor:
        gen = step_generator(inputs.seed, step)
        i, j = batch_index(len(cond), hp["batch"], gen), batch_index(len(keep), hp["batch"], gen)
        xt, _, t = fam.noised(x0[i], gen)
        kt, _, tk = fam.noised(keep_x0[j], gen)
        xt, t, c, a = (shard.take(v) for v in (xt, t, cond[i], anchor[i]))
        kt, tk, k = (shard.take(v) for v in (kt, tk, keep[j]))
        with torch.no_grad(), adapter_off(net):   # eps*
            target = guided_target(fam.predict(model, xt, t, c), fam.predict(model, xt, t, a), hp["eta"])
            keep_target = fam.predict(model, kt, tk, k)
        erase_term = F.mse_loss(fam.predict(model, xt, t, c), target)
        anchor_term = F.mse_loss(fam.predict(model, kt, tk, k), keep_target)
        return erase_term + hp["anchor_weight"] * anchor_term

    # kaiming A, zero B (peft's default = the published init): the membrane starts as the identity.
    lora = train_lora(net, comp, transformer_block_linears(net), loss_fn, inputs, init=True)
    return MethodOutput("lora", lora.factors, rank=lora.rank, alpha=lora.alpha, stats=lora.stats)
