"""Latents of images the frozen model draws for given prompts: the x0 that methods noise and train on.

Noising them is the family's business (jobs/models/adapters.py: DDPM add_noise, or flow matching).
"""
from __future__ import annotations

import torch

from jobs.models.adapters import image_size


@torch.no_grad()
def generate_latents(pipe, prompts, seed: int, steps: int = 20, guidance: float = 5.0,
                     batch: int = 64) -> torch.Tensor:
    """One latent per prompt, deterministic per (prompt index, seed)."""
    out = []
    prompts = list(prompts)
    size = image_size(pipe)
    for i in range(0, len(prompts), batch):
        chunk = prompts[i:i + batch]
        gens = [torch.Generator().manual_seed(seed * 100003 + i + j) for j in range(len(chunk))]
        res = pipe(chunk, num_inference_steps=steps, guidance_scale=guidance, generator=gens,
                   height=size, width=size, output_type="latent")
        out.append(res.images)
    return torch.cat(out)

