"""Stage 2: the evaluator, on clean renders and on their VAE reconstructions."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from jobs.toyworld.dataset import LabelledPool
from jobs.toyworld.evaluator import Evaluator, to_tensor


def _augment(x: torch.Tensor, vae, gen: torch.Generator) -> torch.Tensor:
    """Half the batch goes through the VAE (what generated images look like); all gets mild noise."""
    if vae is not None:
        half = x.shape[0] // 2
        with torch.no_grad():
            x = torch.cat([vae.decode(vae.encode(x[:half]).latent_dist.mean).sample.clamp(-1, 1), x[half:]])
    return x + 0.05 * torch.rand(x.shape[0], 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)


def train_evaluator(evaluator: Evaluator, pool: LabelledPool, steps: int, batch: int, lr: float,
                    seed: int, vae=None, log=print) -> Evaluator:
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = evaluator.net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    t0 = time.time()
    for step in range(steps):
        idx = rng.integers(len(pool.images), size=batch)
        logits = net(_augment(to_tensor(pool.images[idx]), vae, gen))
        loss = sum(F.cross_entropy(logits[k], torch.from_numpy(v[idx]), ignore_index=-1)
                   for k, v in pool.labels.items())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"evaluator step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    net.eval()
    return evaluator
