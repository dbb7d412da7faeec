"""Stage 3: the UNet and text encoder, jointly, with classifier-free guidance dropout and EMA."""
from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F

from jobs.toyworld.dataset import CaptionedPool
from jobs.toyworld.evaluator import to_tensor


@torch.no_grad()
def encode_latents(vae, images: np.ndarray, batch: int = 512) -> torch.Tensor:
    out = [vae.encode(to_tensor(images[i:i + batch])).latent_dist.mean for i in range(0, len(images), batch)]
    return torch.cat(out) * vae.config.scaling_factor


def tokenize(tokenizer, texts: list[str]) -> torch.Tensor:
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1 - decay)


def _min_snr_weight(scheduler, t: torch.Tensor, gamma: float = 5.0) -> torch.Tensor:
    """Min-SNR-gamma loss weights for epsilon prediction (faster, steadier convergence)."""
    ac = scheduler.alphas_cumprod[t]
    snr = ac / (1 - ac)
    return torch.clamp(snr, max=gamma) / snr


def train_pipeline(unet, text_encoder, tokenizer, scheduler, vae, pool: CaptionedPool, *, steps: int,
                   batch: int, lr: float, seed: int, cfg_dropout: float = 0.1, ema_decay: float = 0.999,
                   log=print):
    """Returns EMA copies of (unet, text_encoder)."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    latents = encode_latents(vae, pool.images)
    ids = tokenize(tokenizer, [p.text for p in pool.prompts])
    empty = tokenize(tokenizer, [""])[0]
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05,
                                                final_div_factor=20)
    unet.train(), text_encoder.train()
    t0 = time.time()
    for step in range(steps):
        idx = torch.from_numpy(rng.integers(len(latents), size=batch))
        x0, tok = latents[idx], ids[idx].clone()
        tok[torch.rand(batch, generator=gen) < cfg_dropout] = empty
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=gen)
        xt = scheduler.add_noise(x0, noise, t)
        pred = unet(xt, t, text_encoder(tok)[0]).sample
        loss = (F.mse_loss(pred, noise, reduction="none").mean((1, 2, 3)) * _min_snr_weight(scheduler, t)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        _ema_update(ema_unet, unet, decay)
        _ema_update(ema_text, text_encoder, decay)
        if step % 100 == 0 or step == steps - 1:
            log(f"unet step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    return ema_unet, ema_text
