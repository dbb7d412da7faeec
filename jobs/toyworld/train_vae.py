"""Stage 1: the autoencoder (32x32 RGB <-> 8x8x4 latents)."""
from __future__ import annotations

import time

import numpy as np
import torch

from jobs.toyworld.evaluator import to_tensor


def train_vae(vae, images: np.ndarray, steps: int, batch: int, lr: float, seed: int, log=print):
    """MSE reconstruction with a tiny KL term; sets scaling_factor so latents have unit std."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    vae.train()
    t0 = time.time()
    for step in range(steps):
        x = to_tensor(images[rng.integers(len(images), size=batch)])
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        recon = vae.decode(z).sample
        loss = (recon - x).pow(2).mean() + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"vae step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    vae.eval()
    with torch.no_grad():
        z = vae.encode(to_tensor(images[:2048])).latent_dist.mean
    vae.register_to_config(scaling_factor=float(1.0 / z.std()))
    return vae
