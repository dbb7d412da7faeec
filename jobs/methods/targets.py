"""Which weights a method touches, found by module type rather than hard-coded names."""
from __future__ import annotations

from torch import nn


def denoiser(pipe) -> tuple[str, nn.Module]:
    """The pipeline's denoising network and its component name (unet for SD/SDXL, transformer for DiTs)."""
    for name in ("unet", "transformer"):
        module = getattr(pipe, name, None)
        if module is not None:
            return name, module
    raise ValueError(f"{type(pipe).__name__} has no unet or transformer")


def cross_attention_modules(net: nn.Module) -> dict[str, nn.Module]:
    """Attention modules whose keys/values come from the text (attn2 in SD's UNet)."""
    from diffusers.models.attention_processor import Attention

    return {n: m for n, m in net.named_modules() if isinstance(m, Attention) and m.is_cross_attention}


def cross_attention_params(net: nn.Module, projections: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out")
                           ) -> dict[str, nn.Parameter]:
    """Parameters of the cross-attention projections named (ESD-x trains all of them)."""
    out = {}
    for mname, module in cross_attention_modules(net).items():
        for pname, p in module.named_parameters():
            if pname.split(".")[0] in projections:
                out[f"{mname}.{pname}"] = p
    return out


def non_cross_attention_params(net: nn.Module) -> dict[str, nn.Parameter]:
    """Everything but cross-attention and the time embedding (ESD-u)."""
    xattn = set(cross_attention_params(net))
    return {n: p for n, p in net.named_parameters()
            if n not in xattn and not n.startswith(("time_embedding", "time_proj"))}
