"""Stage 2: the evaluator, on clean renders and on their VAE reconstructions."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from jobs.toyworld.dataset import LabelledPool
from jobs.toyworld.evaluator import Evaluator, to_tensor


@torch.no_grad()
def reconstruct(vae, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Images after the VAE round trip: what generated images look like (uint8)."""
    out = []
    for i in range(0, len(images), batch):
        rec = vae.decode(vae.encode(to_tensor(images[i:i + batch])).latent_dist.mean).sample.clamp(-1, 1)
        out.append(((rec.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8))
    return np.concatenate(out)


def with_reconstructions(pool: LabelledPool, vae) -> LabelledPool:
    """The pool plus its VAE reconstructions under the same labels (computed once, not per step)."""
    labels = {k: np.concatenate([v, v]) for k, v in pool.labels.items()}
    return LabelledPool(np.concatenate([pool.images, reconstruct(vae, pool.images)]), labels)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mild pixel noise of random strength, so the judge does not rely on perfectly flat colour."""
    return x + 0.05 * torch.rand(x.shape[0], 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)


def train_evaluator(evaluator: Evaluator, pool: LabelledPool, steps: int, batch: int, lr: float,
                    seed: int, log=print) -> Evaluator:
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = evaluator.net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    t0 = time.time()
    for step in range(steps):
        idx = rng.integers(len(pool.images), size=batch)
        logits = net(_augment(to_tensor(pool.images[idx]), gen))
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
