"""Frozen components in half precision: text encoders and VAE in bf16/fp16, the denoiser in its own dtype.

A step trains (or edits) only the denoiser; the text encoders and the VAE are frozen, and on a GPU
holding them in 16 bits halves their weights (SDXL's two CLIPs, SD3's and Flux's T5-XXL: 9.5 GB in
fp32). diffusers pipelines hand tensors between components in the dtype of the one that made them
(prompt embeddings and initial latents in the text encoder's dtype, latents into the VAE as they
are), so two seams convert: every floating input of the denoiser is cast to the denoiser's dtype
(a forward pre-hook), and the VAE's encode/decode take their input in the VAE's dtype and return
the denoiser's. Everything else (schedulers, our own training code) sees the denoiser's dtype.

`auto` is bf16 on CUDA and fp32 elsewhere: CPUs run bf16 matmuls slowly, and fp16 is left to those
who ask for it (SDXL's VAE overflows in fp16, which is why bf16 is the default half).
"""
from __future__ import annotations

import functools

import torch

from jobs.models.targets import denoiser

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FROZEN = ("text_encoder", "text_encoder_2", "text_encoder_3", "vae")


def frozen_dtype(precision: str, device: str) -> torch.dtype:
    """The dtype frozen components are held in: `auto` is bf16 on CUDA, fp32 on any other device."""
    if precision == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return DTYPES[precision]


def hold_frozen_in(pipe, dtype: torch.dtype) -> list[str]:
    """Cast the pipeline's frozen components to `dtype` and convert at their seams; the names cast."""
    working = denoiser(pipe)[1].dtype
    if dtype == working:
        return []
    cast = []
    for name in FROZEN:
        module = getattr(pipe, name, None)
        if module is None:
            continue
        module.to(dtype)
        cast.append(name)
    _cast_inputs(denoiser(pipe)[1])
    if getattr(pipe, "vae", None) is not None:
        for method in ("encode", "decode"):
            setattr(pipe.vae, method, _converting(getattr(pipe.vae, method), dtype, working))
    return cast


def _cast_inputs(module: torch.nn.Module) -> None:
    """Every floating tensor argument reaches `module` in the dtype of its parameters (set once)."""
    if getattr(module, "_inputs_cast", False):
        return

    def hook(mod, args, kwargs):
        dtype = next(mod.parameters()).dtype
        return _to(args, dtype), _to(kwargs, dtype)

    module.register_forward_pre_hook(hook, with_kwargs=True)
    module._inputs_cast = True


def _converting(method, inside: torch.dtype, outside: torch.dtype):
    """A VAE method taking its input in `inside` and giving its floating outputs back in `outside`."""
    @functools.wraps(method)
    def call(x, *args, **kwargs):
        return _outward(method(_to(x, inside), *args, **kwargs), outside)
    return call


def _outward(out, dtype: torch.dtype):
    """A VAE output (tensor, tuple, BaseOutput, or latent distribution) with its tensors in `dtype`."""
    if isinstance(out, torch.Tensor):
        return _to(out, dtype)
    if isinstance(out, tuple):
        return tuple(_outward(v, dtype) for v in out)
    if hasattr(out, "logvar"):   # DiagonalGaussianDistribution: sample() and mode() read these
        for attr in ("parameters", "mean", "logvar", "std", "var"):
            setattr(out, attr, _to(getattr(out, attr), dtype))
        return out
    for field in ("sample", "latent_dist"):   # BaseOutput: setting an attribute updates its dict too
        if getattr(out, field, None) is not None:
            setattr(out, field, _outward(getattr(out, field), dtype))
    return out


def _to(value, dtype: torch.dtype):
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, dtype) for k, v in value.items()}
    return value
