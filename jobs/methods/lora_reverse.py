"""LoRA reverse fine-tune: a switchable adapter (r 8, alpha 16 on to_q/to_k/to_v).

Loss = retain term on retain prompts + suppress_weight * MSE(eps(x_t, c_target), eps*(x_t, c_anchor)),
where eps* is the same network with the adapter switched off. The retain term is the plain denoising
loss (retain_target "noise", as published) or, by default, a match to eps* ("frozen"): on the toy
world the denoising loss on generated images cost 15% retain at lr 3e-4. "noise" means the family's denoising target
(noise for SD/SDXL, velocity noise - x0 for SD3). Output: the LoRA factors.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from jobs.models.adapters import adapter
from jobs.training.finetune import batch_index, step_generator
from jobs.training.lora_finetune import adapter_off, train_lora
from jobs.training.latent_pool import generate_latents
from jobs.methods.interface import EraseInputs, MethodOutput
from jobs.models.targets import denoiser


def erase(pipe, inputs: EraseInputs) -> MethodOutput:
    hp = inputs.hparams
    comp, net = denoiser(pipe)
    fam, cp = adapter(pipe), inputs.prompts
    cond, anchor = fam.encode(cp.target), fam.encode(cp.anchor)
    keep = fam.encode(cp.preserve) if cp.preserve else fam.encode(cp.anchor)
    x0 = generate_latents(pipe, cp.target, inputs.seed)
    keep_x0 = generate_latents(pipe, cp.preserve or cp.anchor, inputs.seed + 1)

    def loss_fn(step: int, model, shard) -> torch.Tensor:
        gen = step_generator(inputs.seed, step)
        i, j = batch_index(len(cond), hp["batch"], gen), batch_index(len(keep), hp["batch"], gen)
        xt, _, t = fam.noised(x0[i], gen)
        kt, denoised, tk = fam.noised(keep_x0[j], gen)
        xt, t, c, a = (shard.take(v) for v in (xt, t, cond[i], anchor[i]))
        kt, denoised, tk, k = (shard.take(v) for v in (kt, denoised, tk, keep[j]))
        with torch.no_grad(), adapter_off(net):
            target = fam.predict(model, xt, t, a)
            keep_target = fam.predict(model, kt, tk, k) if hp["retain_target"] == "frozen" else denoised
        suppress = F.mse_loss(fam.predict(model, xt, t, c), target)
        retain = F.mse_loss(fam.predict(model, kt, tk, k), keep_target)
        return retain + hp["suppress_weight"] * suppress

    lora = train_lora(net, comp, hp["target_modules"], loss_fn, inputs)
    return MethodOutput("lora", lora.factors, rank=lora.rank, alpha=lora.alpha, stats=lora.stats)
