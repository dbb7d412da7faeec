"""Which weights a method touches, found by module type rather than hard-coded names.

"Text-facing attention" is where the prompt enters the image: in a UNet (SD, SDXL) the
cross-attention modules (attn2: image queries, text keys/values); in an MMDiT (SD3) and in Flux's
dual-stream blocks the text stream's half of each joint attention (add_q/k/v_proj and to_add_out),
through whose keys and values the image tokens read the prompt (Flux's single-stream blocks have
one projection for both streams, so they are not text-facing). Methods name projections in UNet
terms (to_q, to_k, to_v, to_out); JOINT_PROJECTIONS translates them.

Z-Image has neither: caption tokens and image tokens share every projection of the main `layers`.
The only weights that see the caption alone are its `context_refiner` blocks (self-attention over
caption tokens, before they join the image tokens), so those blocks' attention projections are
Z-Image's text-facing attention: changing them changes what the caption tokens carry into the
shared layers and nothing else (the image path through `noise_refiner` and `layers` is untouched,
which is what ESD-x's split from ESD-u means).

`text_projections` is the other question UCE asks: which Linear maps read the text encoder's
output as it is (fixed per prompt, before any timestep or image token mixes in), so a closed-form
edit of their weights maps the concept's embeddings onto the anchor's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from erasecore.catalog import TrainedSet

JOINT_PROJECTIONS = {"to_q": "add_q_proj", "to_k": "add_k_proj", "to_v": "add_v_proj", "to_out": "to_add_out"}
# Conditioning embeddings (timestep; SDXL's pooled-text + size ids; SD3's timestep + pooled text): ESD-u
# leaves them alone, as published ESD-u leaves the time embedding.
# Z-Image's timestep embedding is t_embedder.
CONDITIONING_EMBEDDINGS = ("time_embedding", "time_proj", "add_embedding", "add_time_proj", "time_text_embed",
                           "t_embedder")
# Blocks that attend over caption tokens alone (Z-Image; see the module docstring).
TEXT_ONLY_BLOCKS = "context_refiner"


def denoiser(pipe) -> tuple[str, nn.Module]:
    """The pipeline's denoising network and its component name (unet for SD/SDXL, transformer for DiTs)."""
    for name in ("unet", "transformer"):
        module = getattr(pipe, name, None)
        if module is not None:
            return name, module
    raise ValueError(f"{type(pipe).__name__} has no unet or transformer")


def cross_attention_modules(net: nn.Module) -> dict[str, nn.Module]:
    """Attention modules whose keys/values come from the text alone (attn2 in a UNet; none in an MMDiT)."""
    from diffusers.models.attention_processor import Attention

    return {n: m for n, m in net.named_modules() if isinstance(m, Attention) and m.is_cross_attention}


def joint_attention_modules(net: nn.Module) -> dict[str, nn.Module]:
    """Attention modules with a text stream of their own (add_k_proj is set): SD3's joint attention
    (diffusers' Attention) and Flux's dual-stream blocks (FluxAttention, its own class)."""
    return {n: m for n, m in net.named_modules()
            if isinstance(getattr(m, "add_k_proj", None), nn.Linear) and hasattr(m, "to_q")}


def text_only_attention_modules(net: nn.Module) -> dict[str, nn.Module]:
    """Self-attention modules of blocks that see caption tokens only (Z-Image's context_refiner)."""
    from diffusers.models.attention_processor import Attention

    prefix = TEXT_ONLY_BLOCKS + "."
    return {n: m for n, m in net.named_modules() if n.startswith(prefix) and isinstance(m, Attention)}


BLOCK_LINEAR_PARENTS = ("attn", "attn1", "attn2", "ff", "ff_context", "attention", "feed_forward")


def transformer_block_linears(net: nn.Module) -> list[str]:
    """Names of the attention and feed-forward Linear layers inside the transformer blocks (SPM's membrane).

    UNet: every BasicTransformerBlock's attn1, attn2 and ff linears; SD3 and Flux's dual-stream blocks:
    the attention (image and text streams) and both feed-forwards; Z-Image: every block's attention and
    feed_forward (its refiners' too). Left out: the AdaLayerNorm modulation linears (they read the
    timestep, not the tokens), the 1x1 proj_in/proj_out around UNet blocks, and Flux's single-stream
    blocks (their fused proj_mlp/proj_out are not attention or feed-forward modules of their own).
    """
    out = []
    for bname, block in net.named_modules():
        if not type(block).__name__.endswith("TransformerBlock"):
            continue
        for name, m in block.named_modules():
            if isinstance(m, nn.Linear) and name.split(".")[0] in BLOCK_LINEAR_PARENTS:
                out.append(f"{bname}.{name}")
    return out


def text_kv_linears(net: nn.Module) -> list[str]:
    """Names of the cross-attention key and value projections (MACE's LoRA)."""
    return [f"{m}.{p}" for m in cross_attention_modules(net) for p in ("to_k", "to_v")]


def lora_linears(net: nn.Module, trains: TrainedSet) -> list[str]:
    """The Linear layers a LoRA-training entry wraps (empty for the others)."""
    if trains.kind == "lora_block_linears":
        return transformer_block_linears(net)
    if trains.kind == "lora_text_kv":
        return text_kv_linears(net)
    return []


def cross_attention_params(net: nn.Module, projections: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out")
                           ) -> dict[str, nn.Parameter]:
    """Parameters of the text-facing attention projections named (ESD-x trains all of them)."""
    wanted = [(m, set(projections)) for m in cross_attention_modules(net).items()]
    wanted += [(m, {JOINT_PROJECTIONS[p] for p in projections}) for m in joint_attention_modules(net).items()]
    wanted += [(m, set(projections)) for m in text_only_attention_modules(net).items()]
    out = {}
    for (mname, module), names in wanted:
        for pname, p in module.named_parameters():
            if pname.split(".")[0] in names:
                out[f"{mname}.{pname}"] = p
    return out


def non_cross_attention_params(net: nn.Module) -> dict[str, nn.Parameter]:
    """Everything but text-facing attention and the conditioning embeddings (ESD-u)."""
    xattn = set(cross_attention_params(net))
    return {n: p for n, p in net.named_parameters() if n not in xattn and not n.startswith(CONDITIONING_EMBEDDINGS)}


def trained_params(net: nn.Module, trains: TrainedSet) -> dict[str, nn.Parameter]:
    """The denoiser parameters a catalog entry's TrainedSet names (none for closed forms and LoRA)."""
    if trains.kind == "text_attention":
        return cross_attention_params(net, projections=trains.projections)
    if trains.kind == "non_text_attention":
        return non_cross_attention_params(net)
    return {}


@dataclass(frozen=True)
class TextProjection:
    """A Linear map that reads the text encoder's output unchanged by timestep or image.

    reads: "states" (per-token states, (N, L, D)) or "pooled" (one vector per prompt, (N, D));
    prepare: what the network applies to those inputs before this Linear (Z-Image's RMSNorm).
    """

    name: str
    linear: nn.Linear
    reads: str
    prepare: Callable[[torch.Tensor], torch.Tensor] = lambda x: x


def text_projections(net: nn.Module, projections: tuple[str, ...] = ("to_k", "to_v")) -> list[TextProjection]:
    """The Linear maps that read the prompt's embeddings as they are, per family.

    UNet (SD, SDXL): the named projections of each cross-attention (attn2 to_k/to_v read the states).
    DiTs: the embedders that take the text encoders' output into the transformer's width: Flux's
    context_embedder (T5 states) and time_text_embed.text_embedder.linear_1 (pooled CLIP), as the UCE
    authors' Flux edit; Z-Image's cap_embedder Linear (Qwen3 states, after its RMSNorm). `projections`
    names UNet projections and does not apply to the embedders.
    """
    out = [TextProjection(f"{m}.{p}", getattr(module, p), "states")
           for m, module in cross_attention_modules(net).items() for p in projections]
    if out:
        return out
    context = getattr(net, "context_embedder", None)
    if isinstance(context, nn.Linear):
        out.append(TextProjection("context_embedder", context, "states"))
    pooled = getattr(getattr(getattr(net, "time_text_embed", None), "text_embedder", None), "linear_1", None)
    if isinstance(pooled, nn.Linear):
        out.append(TextProjection("time_text_embed.text_embedder.linear_1", pooled, "pooled"))
    caption = getattr(net, "cap_embedder", None)
    if isinstance(caption, nn.Sequential) and isinstance(caption[-1], nn.Linear):
        norm = caption[0] if len(caption) > 1 else (lambda x: x)
        out.append(TextProjection(f"cap_embedder.{len(caption) - 1}", caption[-1], "states", norm))
    return out
