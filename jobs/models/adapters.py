"""How each model family encodes prompts, noises latents and calls its denoiser, so methods are written once.

- sd (SD 1.x/2.x): a UNet predicting noise (or v), DDPM-style add_noise, text states into attn2.
- sdxl: the same UNet layout; the states are both CLIP encoders' concatenated, and the UNet also takes
  the pooled embedding of the second encoder and the size/crop ids (added_cond_kwargs).
- sd3: an SD3Transformer2DModel predicting the flow velocity (noise - x0) at x_t = (1 - s) x0 + s noise,
  timestep s * 1000; text enters through joint attention, the pooled CLIP embeddings through the time embedding.

ESD's and CA's targets are linear combinations of predictions, so they hold for any prediction type.
Which families a method applies to is in the method catalog (orchestrator/core/catalog.py, read at config time).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from orchestrator.core.families import DESCRIPTION, family_of, unsupported_pipeline
from jobs.models.targets import denoiser


@dataclass(frozen=True)
class Conditioning:
    """Text conditioning of N prompts; indexes and slices along the prompt axis like a tensor (shard.take)."""

    states: torch.Tensor                  # (N, L, D) what the denoiser's attention reads
    pooled: torch.Tensor | None = None    # (N, P) pooled text embeddings (SDXL, SD3)
    time_ids: torch.Tensor | None = None  # (N, 6) SDXL original size, crop, target size

    @property
    def shape(self) -> torch.Size:
        return self.states.shape

    def __len__(self) -> int:
        return self.states.shape[0]

    def __getitem__(self, index) -> Conditioning:
        return replace(self, states=self.states[index],
                       pooled=None if self.pooled is None else self.pooled[index],
                       time_ids=None if self.time_ids is None else self.time_ids[index])


def image_size(pipe) -> int:
    """Pixels per side of the images the denoiser is configured for (latent sample_size x VAE factor)."""
    size = denoiser(pipe)[1].config.sample_size
    return int(size[0] if isinstance(size, (list, tuple)) else size) * pipe.vae_scale_factor


class UNetFamily:
    """SD 1.x/2.x and SDXL: UNet2DConditionModel with cross-attention, DDPM-style noising."""

    def __init__(self, pipe, family: str):
        self.pipe, self.family = pipe, family

    @torch.no_grad()
    def encode(self, prompts) -> Conditioning:
        pipe = self.pipe
        if self.family == "sd":
            states, _ = pipe.encode_prompt(list(prompts), pipe.device, 1, False)
            return Conditioning(states)
        states, _, pooled, _ = pipe.encode_prompt(prompt=list(prompts), device=pipe.device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
        # What SDXL's __call__ passes for an unconditioned crop at the native size.
        size = image_size(pipe)
        ids = torch.tensor([[size, size, 0, 0, size, size]], dtype=states.dtype, device=states.device)
        return Conditioning(states, pooled, ids.repeat(len(states), 1))

    def predict(self, net, xt: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        if cond.pooled is None:
            return net(xt, t, cond.states).sample
        return net(xt, t, cond.states, added_cond_kwargs={"text_embeds": cond.pooled, "time_ids": cond.time_ids}).sample

    def noised(self, x0: torch.Tensor, gen: torch.Generator):
        """(x_t, what the denoiser should predict at x_t, t) with t uniform over the training timesteps.

        From the training betas (alphas_cumprod), not scheduler.add_noise: samplers such as Euler
        (SDXL's) or DPM-Solver look t up in the inference steps of the last generation, and Euler's
        x0 + sigma * noise is not what the UNet reads (its scale_model_input converts it).
        """
        scheduler = self.pipe.scheduler
        if getattr(scheduler, "alphas_cumprod", None) is None:
            raise ValueError(f"{type(scheduler).__name__} has no training noise schedule (alphas_cumprod)")
        t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=gen).to(x0.device)
        noise = torch.randn(x0.shape, generator=gen).to(x0.device, x0.dtype)
        # The same operations as DDPMScheduler.add_noise, so SD results match the earlier code bit for bit.
        ac = scheduler.alphas_cumprod.to(device=x0.device, dtype=x0.dtype)
        a = (ac[t] ** 0.5).flatten().view(-1, *([1] * (x0.dim() - 1)))
        b = ((1 - ac[t]) ** 0.5).flatten().view(-1, *([1] * (x0.dim() - 1)))
        kind = scheduler.config.prediction_type
        target = a * noise - b * x0 if kind == "v_prediction" else x0 if kind == "sample" else noise
        return a * x0 + b * noise, target, t


class SD3Family:
    """SD3: joint-attention transformer trained by flow matching (FlowMatchEulerDiscreteScheduler)."""

    family = "sd3"

    def __init__(self, pipe):
        self.pipe = pipe

    @torch.no_grad()
    def encode(self, prompts) -> Conditioning:
        # Without T5 (text_encoder_3=None) the pipeline fills its tokens with zeros, as at generation.
        states, _, pooled, _ = self.pipe.encode_prompt(prompt=list(prompts), prompt_2=None, prompt_3=None,
                                                       device=self.pipe.device, num_images_per_prompt=1,
                                                       do_classifier_free_guidance=False)
        return Conditioning(states, pooled)

    def predict(self, net, xt: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return net(hidden_states=xt, encoder_hidden_states=cond.states, pooled_projections=cond.pooled,
                   timestep=t).sample

    def noised(self, x0: torch.Tensor, gen: torch.Generator):
        """(x_t, velocity noise - x0, t = s * 1000) with s from the scheduler's training table (shifted)."""
        cfg = self.pipe.scheduler.config
        n = cfg.num_train_timesteps
        # The training table (not scheduler.sigmas: generating replaces those with the inference steps).
        k = torch.randint(0, n, (x0.shape[0],), generator=gen).to(x0.device)
        s = (k + 1).to(x0.dtype) / n
        s = cfg.shift * s / (1 + (cfg.shift - 1) * s)
        noise = torch.randn(x0.shape, generator=gen).to(x0.device, x0.dtype)
        sb = s.view(-1, *([1] * (x0.dim() - 1)))
        return (1 - sb) * x0 + sb * noise, noise - x0, s * n


def adapter(pipe):
    """The family adapter for a loaded pipeline; ValueError naming the class when no family fits."""
    name = type(pipe).__name__
    family = family_of(name)
    if family in ("sd", "sdxl"):
        return UNetFamily(pipe, family)
    if family == "sd3":
        if getattr(pipe.scheduler.config, "use_dynamic_shifting", False):
            raise ValueError(f"{name}: a resolution-dependent scheduler shift is not supported ({DESCRIPTION[family]})")
        return SD3Family(pipe)
    raise ValueError(unsupported_pipeline(name))
