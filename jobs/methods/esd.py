"""ESD (Gandikota et al., ICCV 2023, arXiv 2303.07345): negative-guidance fine-tuning.

Train eps(x_t, c) toward eps*(x_t, c_a) - eta (eps*(x_t, c) - eps*(x_t, c_a)) with eps* frozen
(jobs/training/guided.py), on images of the concept. ESD-x trains text-facing attention only (UNet
attn2; SD3's joint-attention text projections), ESD-u everything else (the catalog's TrainedSet).
As measured on the toy world, the anchor c_a is the prompt without the concept (not the empty
prompt: that erased colours too), plus a preservation term that keeps other objects' predictions.
Variant "published" (the catalog) is the official script's: anchor "empty", eta 2, no preservation.
"""
from __future__ import annotations

import dataclasses

from jobs.methods.interface import EraseInputs, MethodOutput
from jobs.models.targets import denoiser, trained_params
from jobs.training import guided
from jobs.training.latent_pool import generate_latents


def erase(pipe, inputs: EraseInputs) -> MethodOutput:
    _, net = denoiser(pipe)
    if inputs.hparams["anchor"] == "empty":
        cp = inputs.prompts
        inputs = dataclasses.replace(inputs, prompts=dataclasses.replace(cp, anchor=("",) * len(cp.target)))
    params = trained_params(net, inputs.method.trains)
    x0 = generate_latents(pipe, inputs.prompts.target, inputs.seed)
    tensors, stats = guided.run(pipe, inputs, params, x0, inputs.hparams["eta"])
    return MethodOutput("dense", tensors, stats=stats)
