"""Concept Ablation (Kumari et al., arXiv 2303.13516): map the target to an anchor concept.

Minimise MSE(eps(x_t, c_target), stopgrad eps*(x_t, c_anchor)) on noised images of the anchor:
the guided loss of jobs/training/guided.py with eta = 0, training text-facing K/V (UNet attn2
to_k/to_v; SD3's joint-attention add_k_proj/add_v_proj). The anchor is the prompt without the
concept (see jobs/training/concept_prompts.py).
"""
from __future__ import annotations

from jobs.methods.interface import EraseInputs, MethodOutput
from jobs.models.targets import denoiser, trained_params
from jobs.training import guided
from jobs.training.latent_pool import generate_latents


def erase(pipe, inputs: EraseInputs) -> MethodOutput:
    _, net = denoiser(pipe)
    params = trained_params(net, inputs.method.trains)
    x0 = generate_latents(pipe, inputs.prompts.anchor, inputs.seed)
    tensors, stats = guided.run(pipe, inputs, params, x0, eta=0.0)
    return MethodOutput("dense", tensors, stats=stats)
