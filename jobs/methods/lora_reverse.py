"""LoRA reverse fine-tune: a switchable adapter (r 8, alpha 16 on to_q/to_k/to_v).

Loss = retain term on retain prompts + suppress_weight * MSE(eps(x_t, c_target), eps*(x_t, c_anchor)),
where eps* is the same network with the adapter switched off. The retain term is the plain denoising
loss (retain_target "noise", as published) or, by default, a match to eps* ("frozen"): on the toy
world the denoising loss on generated images cost 15% retain at lr 3e-4. Output: the LoRA factors.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from jobs.finetune import finetune, step_generator
from jobs.latent_pool import generate_latents, noised
from jobs.methods.esd import batch_index, finetune_config
from jobs.methods.interface import EraseInputs, MethodOutput, merge_hparams
from jobs.methods.targets import denoiser
from jobs.text_embeddings import encode

DEFAULTS = {"rank": 8, "alpha": 16, "steps": 200, "lr": 1e-3, "batch": 16, "suppress_weight": 1.0, "retain_target": "frozen",
            "target_modules": ["to_q", "to_k", "to_v"], "grad_accum": 1, "mixed_precision": "no"}
ADAPTER = "erase"


def _factors(trained: dict[str, torch.Tensor], component: str) -> dict[str, torch.Tensor]:
    """LoRA A/B weights under delta keys: '<component>.<module>.lora_A.weight'."""
    out = {}
    for name, value in trained.items():
        module, _, rest = name.partition(".lora_")
        out[f"{component}.{module}.lora_{rest.split('.')[0]}.weight"] = value
    return out


def erase(pipe, inputs: EraseInputs) -> MethodOutput:
    from peft import LoraConfig

    hp = merge_hparams("lora", DEFAULTS, inputs.hparams)
    comp, net = denoiser(pipe)
    cp = inputs.prompts
    cond, anchor = encode(pipe, cp.target), encode(pipe, cp.anchor)
    keep = encode(pipe, cp.preserve) if cp.preserve else encode(pipe, cp.anchor)
    x0 = generate_latents(pipe, cp.target, inputs.seed)
    keep_x0 = generate_latents(pipe, cp.preserve or cp.anchor, inputs.seed + 1)
    net.add_adapter(LoraConfig(r=hp["rank"], lora_alpha=hp["alpha"], init_lora_weights="gaussian",
                               target_modules=list(hp["target_modules"])), adapter_name=ADAPTER)
    params = {n: p for n, p in net.named_parameters() if ".lora_" in n}

    def loss_fn(step: int, model, shard) -> torch.Tensor:
        gen = step_generator(inputs.seed, step)
        i, j = batch_index(len(cond), hp["batch"], gen), batch_index(len(keep), hp["batch"], gen)
        xt, _, t = noised(pipe.scheduler, x0[i], gen)
        kt, noise, tk = noised(pipe.scheduler, keep_x0[j], gen)
        xt, t, c, a = (shard.take(v) for v in (xt, t, cond[i], anchor[i]))
        kt, noise, tk, k = (shard.take(v) for v in (kt, noise, tk, keep[j]))
        with torch.no_grad():
            net.disable_adapters()   # the adapter switch lives on the inner network
            target = model(xt, t, a).sample
            keep_target = model(kt, tk, k).sample if hp["retain_target"] == "frozen" else noise
            net.enable_adapters()
        suppress = F.mse_loss(model(xt, t, c).sample, target)
        retain = F.mse_loss(model(kt, tk, k).sample, keep_target)
        return retain + hp["suppress_weight"] * suppress

    try:
        trained = finetune(net, params, loss_fn, finetune_config(hp, inputs.seed), inputs.parallel, inputs.log)
    finally:
        net.unload_lora()  # removes the peft wrappers: the network is as it was
    return MethodOutput("lora", _factors(trained.values, comp), rank=hp["rank"], alpha=float(hp["alpha"]),
                        stats=trained.stats)
