"""Latents of images the frozen model draws for given prompts: the x0 that methods noise and train on."""
from __future__ import annotations

import torch


@torch.no_grad()
def generate_latents(pipe, prompts, seed: int, steps: int = 20, guidance: float = 5.0,
                     batch: int = 64) -> torch.Tensor:
    """One latent per prompt, deterministic per (prompt index, seed)."""
    out = []
    prompts = list(prompts)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor if hasattr(pipe, "unet") else None
    for i in range(0, len(prompts), batch):
        chunk = prompts[i:i + batch]
        gens = [torch.Generator().manual_seed(seed * 100003 + i + j) for j in range(len(chunk))]
        res = pipe(chunk, num_inference_steps=steps, guidance_scale=guidance, generator=gens,
                   height=size, width=size, output_type="latent")
        out.append(res.images)
    return torch.cat(out)


def noised(scheduler, x0: torch.Tensor, gen: torch.Generator, t_max: int | None = None):
    """(x_t, noise, t) with t uniform over the training timesteps."""
    t_max = t_max or scheduler.config.num_train_timesteps
    t = torch.randint(0, t_max, (x0.shape[0],), generator=gen).to(x0.device)
    noise = torch.randn(x0.shape, generator=gen).to(x0.device, x0.dtype)
    return scheduler.add_noise(x0, noise, t), noise, t
