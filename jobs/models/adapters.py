"""How each model family encodes prompts, noises latents and calls its denoiser, so methods are written once.

- sd (SD 1.x/2.x): a UNet predicting noise (or v), DDPM-style add_noise, text states into attn2.
- sdxl: the same UNet layout; the states are both CLIP encoders' concatenated, and the UNet also takes
  the pooled embedding of the second encoder and the size/crop ids (added_cond_kwargs).
- sd3: an SD3Transformer2DModel predicting the flow velocity (noise - x0) at x_t = (1 - s) x0 + s noise,
  timestep s * 1000; text enters through joint attention, the pooled CLIP embeddings through the time embedding.
- flux: a FluxTransformer2DModel on packed latents (2x2 patches: (N, H/2 * W/2, 4 C), as FluxPipeline
  generates them), the same velocity at timestep s, with position ids for image and text tokens, T5 states,
  pooled CLIP, and the guidance embedding (FLUX.1-dev: guidance_embeds) at FluxPipeline's default 3.5.
- zimage: a ZImageTransformer2DModel taking lists (one (C, 1, H, W) latent and one unpadded caption per
  prompt) at timestep 1 - s, predicting x0 - noise (ZImagePipeline negates it): predict() negates it back,
  so every flow family's prediction is the velocity noise - x0.

Flow families noise with the scheduler's shift: the static `shift` (SD3, Z-Image), or, where the scheduler
shifts by resolution (use_dynamic_shifting: FLUX.1), the shift the pipeline uses for this image size (mu
from calculate_shift), so training sees the noise levels generation visits.

ESD's and CA's targets are linear combinations of predictions, so they hold for any prediction type.
Which families a method applies to is in the method catalog (erasecore/catalog.py, read at config time).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from erasecore.families import DESCRIPTION, family_of, unsupported_pipeline
from jobs.models.targets import denoiser


@dataclass(frozen=True)
class Conditioning:
    """Text conditioning of N prompts; indexes and slices along the prompt axis like a tensor (shard.take)."""

    states: torch.Tensor                  # (N, L, D) what the denoiser's attention reads
    pooled: torch.Tensor | None = None    # (N, P) pooled text embeddings (SDXL, SD3, Flux)
    time_ids: torch.Tensor | None = None  # (N, 6) SDXL original size, crop, target size
    mask: torch.Tensor | None = None      # (N, L) real tokens (Z-Image: captions of unequal length, padded)

    @property
    def shape(self) -> torch.Size:
        return self.states.shape

    def __len__(self) -> int:
        return self.states.shape[0]

    def __getitem__(self, index) -> Conditioning:
        return replace(self, states=self.states[index],
                       pooled=None if self.pooled is None else self.pooled[index],
                       time_ids=None if self.time_ids is None else self.time_ids[index],
                       mask=None if self.mask is None else self.mask[index])


def image_size(pipe) -> int:
    """Pixels per side of the images the denoiser is configured for (latent sample_size x VAE factor).

    Flux and Z-Image transformers carry no sample_size: their VAE's (1024 for both published models).
    """
    size = getattr(denoiser(pipe)[1].config, "sample_size", None)
    if size is None:
        return int(pipe.vae.config.sample_size)
    return int(size[0] if isinstance(size, (list, tuple)) else size) * pipe.vae_scale_factor


def flow_noised(x0: torch.Tensor, gen: torch.Generator, scheduler, image_tokens: int):
    """(x_t = (1 - s) x0 + s noise, velocity noise - x0, t = s * 1000) with s drawn from the training table.

    The table (k + 1) / n, shifted as the scheduler shifts (not scheduler.sigmas: generating replaces those
    with the inference steps). `image_tokens` decides the shift of a resolution-dependent scheduler.
    """
    cfg = scheduler.config
    n = cfg.num_train_timesteps
    k = torch.randint(0, n, (x0.shape[0],), generator=gen).to(x0.device)
    s = (k + 1).to(x0.dtype) / n
    if cfg.get("use_dynamic_shifting", False):
        s = scheduler.time_shift(resolution_shift(cfg, image_tokens), 1.0, s)
    else:
        s = cfg.shift * s / (1 + (cfg.shift - 1) * s)
    noise = torch.randn(x0.shape, generator=gen).to(x0.device, x0.dtype)
    sb = s.view(-1, *([1] * (x0.dim() - 1)))
    return (1 - sb) * x0 + sb * noise, noise - x0, s * n


def resolution_shift(cfg, image_tokens: int) -> float:
    """mu of FluxPipeline / ZImagePipeline's calculate_shift: linear in the image's token count."""
    base, top = cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096)
    lo, hi = cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15)
    m = (hi - lo) / (top - base)
    return image_tokens * m + (lo - m * base)


def token_ids(tokenizer, prompts, max_length: int) -> torch.Tensor:
    """(N, max_length) ids, padded, as the pipelines tokenize for their encoders."""
    return tokenizer(list(prompts), padding="max_length", max_length=max_length, truncation=True,
                     return_tensors="pt").input_ids


class _SpatialLatents:
    """Families whose concept tokens are the first CLIP tokenizer's and whose latents are (C, H, W) images."""

    pipe: object

    def token_ids(self, prompts) -> tuple[torch.Tensor, object]:
        """Ids aligned with encode()'s states, and the tokenizer that made them (SDXL's second shares the vocabulary)."""
        tok = self.pipe.tokenizer
        return token_ids(tok, prompts, tok.model_max_length), tok

    def latent_shape(self, n: int) -> tuple[int, ...]:
        net, size = denoiser(self.pipe)[1], image_size(self.pipe) // self.pipe.vae_scale_factor
        return (n, net.config.in_channels, size, size)


class UNetFamily(_SpatialLatents):
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


class SD3Family(_SpatialLatents):
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
        return flow_noised(x0, gen, self.pipe.scheduler, image_tokens=0)


class FluxFamily:
    """FLUX.1: FluxTransformer2DModel on packed latents, T5 states + pooled CLIP, flow matching."""

    family = "flux"
    guidance = 3.5               # FluxPipeline.__call__'s default guidance_scale (the distilled guidance of dev)
    max_sequence_length = 512    # FluxPipeline's default T5 length

    def __init__(self, pipe):
        self.pipe = pipe

    @torch.no_grad()
    def encode(self, prompts) -> Conditioning:
        states, pooled, _ = self.pipe.encode_prompt(prompt=list(prompts), prompt_2=None, device=self.pipe.device,
                                                    num_images_per_prompt=1,
                                                    max_sequence_length=self.max_sequence_length)
        return Conditioning(states, pooled)

    def token_ids(self, prompts) -> tuple[torch.Tensor, object]:
        """T5's ids: the states the transformer reads come from tokenizer_2 (CLIP gives only the pooled vector)."""
        return token_ids(self.pipe.tokenizer_2, prompts, self.max_sequence_length), self.pipe.tokenizer_2

    def _latent_side(self) -> int:
        """Latent pixels per side, as FluxPipeline.prepare_latents computes them (even, for 2x2 packing)."""
        return 2 * (image_size(self.pipe) // (self.pipe.vae_scale_factor * 2))

    def latent_shape(self, n: int) -> tuple[int, ...]:
        side = self._latent_side()
        return (n, (side // 2) ** 2, denoiser(self.pipe)[1].config.in_channels)

    def predict(self, net, xt: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        half = self._latent_side() // 2
        img_ids = self.pipe._prepare_latent_image_ids(len(xt), half, half, xt.device, xt.dtype)
        txt_ids = torch.zeros(cond.states.shape[1], 3, device=xt.device, dtype=xt.dtype)
        guidance = torch.full((len(xt),), self.guidance, device=xt.device, dtype=torch.float32) \
            if net.config.guidance_embeds else None
        return net(hidden_states=xt, timestep=t / 1000, guidance=guidance, pooled_projections=cond.pooled,
                   encoder_hidden_states=cond.states, txt_ids=txt_ids, img_ids=img_ids).sample

    def noised(self, x0: torch.Tensor, gen: torch.Generator):
        """Flow matching on the packed latents (element-wise, so packing does not matter); x0 is (N, tokens, 4 C)."""
        return flow_noised(x0, gen, self.pipe.scheduler, image_tokens=x0.shape[1])


class ZImageFamily:
    """Z-Image: ZImageTransformer2DModel on lists of latents and captions, flow matching."""

    family = "zimage"
    max_sequence_length = 512    # ZImagePipeline's default

    def __init__(self, pipe):
        self.pipe = pipe

    @torch.no_grad()
    def encode(self, prompts) -> Conditioning:
        """ZImagePipeline.encode_prompt's captions (chat template, Qwen3's second-to-last hidden state, padding
        dropped), padded again to one tensor with a mask so they slice like the other families'."""
        captions, _ = self.pipe.encode_prompt(list(prompts), device=self.pipe.device,
                                              do_classifier_free_guidance=False,
                                              max_sequence_length=self.max_sequence_length)
        length = max(len(c) for c in captions)
        states = captions[0].new_zeros(len(captions), length, captions[0].shape[-1])
        mask = torch.zeros(len(captions), length, dtype=torch.bool, device=states.device)
        for i, c in enumerate(captions):
            states[i, :len(c)], mask[i, :len(c)] = c, True
        return Conditioning(states, mask=mask)

    def _templated(self, prompts) -> list[str]:
        """The prompts as ZImagePipeline._encode_prompt feeds them to the tokenizer."""
        return [self.pipe.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                        add_generation_prompt=True, enable_thinking=True)
                for p in prompts]

    def token_ids(self, prompts) -> tuple[torch.Tensor, object]:
        """Ids of the templated prompts, left-aligned and padded as encode() pads its states."""
        tok = self.pipe.tokenizer
        enc = tok(self._templated(prompts), padding="max_length", max_length=self.max_sequence_length,
                  truncation=True, return_tensors="pt")
        rows = [ids[m.bool()] for ids, m in zip(enc.input_ids, enc.attention_mask)]
        out = torch.full((len(rows), max(len(r) for r in rows)), tok.pad_token_id, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
        return out, tok

    def latent_shape(self, n: int) -> tuple[int, ...]:
        side = 2 * (image_size(self.pipe) // (self.pipe.vae_scale_factor * 2))
        return (n, denoiser(self.pipe)[1].config.in_channels, side, side)

    def predict(self, net, xt: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        latents = list(xt.unsqueeze(2).unbind(0))                 # (C, 1, H, W) each: one frame
        captions = [s[m] for s, m in zip(cond.states, cond.mask)]
        out = net(latents, 1 - t / 1000, captions, return_dict=False)[0]
        return -torch.stack(out).squeeze(2)                       # the model predicts x0 - noise

    def noised(self, x0: torch.Tensor, gen: torch.Generator):
        """(x_t, velocity noise - x0, t = s * 1000); image tokens are the 2x2 patches, as ZImagePipeline counts."""
        return flow_noised(x0, gen, self.pipe.scheduler, image_tokens=(x0.shape[-2] // 2) * (x0.shape[-1] // 2))


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
    if family == "flux":
        return FluxFamily(pipe)
    if family == "zimage":
        return ZImageFamily(pipe)
    raise ValueError(unsupported_pipeline(name))
