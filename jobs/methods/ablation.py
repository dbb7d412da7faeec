"""Concept Ablation (Kumari et al., arXiv 2303.13516): map the target to an anchor concept.

Minimise MSE(eps(x_t, c_target), stopgrad eps*(x_t, c_anchor)) on noised images of the anchor,
training text-facing K/V (UNet attn2 to_k/to_v; SD3's joint-attention add_k_proj/add_v_proj). The anchor is the prompt without the concept (see concept_prompts).
"""
from __future__ import annotations

from jobs.latent_pool import generate_latents
from jobs.methods import esd
from jobs.methods.interface import EraseInputs, MethodOutput, merge_hparams
from jobs.methods.targets import cross_attention_params, denoiser

DEFAULTS = {"steps": 150, "lr": 2e-3, "batch": 16, "preserve_weight": 1.0, "grad_accum": 1,
            "mixed_precision": "no"}


def erase(pipe, inputs: EraseInputs) -> MethodOutput:
    hp = merge_hparams("ca", DEFAULTS, inputs.hparams)
    _, net = denoiser(pipe)
    params = cross_attention_params(net, projections=("to_k", "to_v"))
    x0 = generate_latents(pipe, inputs.prompts.anchor, inputs.seed)
    return esd.run(pipe, inputs, hp, params, x0, eta=0.0)
