"""Which weights a method touches, found by module type rather than hard-coded names.

"Text-facing attention" is where the prompt enters the image: in a UNet (SD, SDXL) the
cross-attention modules (attn2: image queries, text keys/values); in an MMDiT (SD3) the text
stream's half of each joint attention (add_q/k/v_proj and to_add_out), through whose keys and
values the image tokens read the prompt. Methods name projections in UNet terms (to_q, to_k,
to_v, to_out); JOINT_PROJECTIONS translates them.
"""
from __future__ import annotations

from torch import nn

from orchestrator.core.catalog import TrainedSet

JOINT_PROJECTIONS = {"to_q": "add_q_proj", "to_k": "add_k_proj", "to_v": "add_v_proj", "to_out": "to_add_out"}
# Conditioning embeddings (timestep; SDXL's pooled-text + size ids; SD3's timestep + pooled text): ESD-u
# leaves them alone, as published ESD-u leaves the time embedding.
CONDITIONING_EMBEDDINGS = ("time_embedding", "time_proj", "add_embedding", "add_time_proj", "time_text_embed")


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
    """Attention modules with a text stream of their own (SD3's joint attention: add_k_proj is set)."""
    from diffusers.models.attention_processor import Attention

    return {n: m for n, m in net.named_modules()
            if isinstance(m, Attention) and getattr(m, "add_k_proj", None) is not None}


def transformer_block_linears(net: nn.Module) -> list[str]:
    """Names of the attention and feed-forward Linear layers inside the transformer blocks (SPM's membrane).

    UNet: every BasicTransformerBlock's attn1, attn2 and ff linears; SD3: every JointTransformerBlock's
    attention (image and text streams) and both feed-forwards. Left out: the AdaLayerNorm modulation
    linears (they read the timestep, not the tokens) and the 1x1 proj_in/proj_out around the blocks.
    """
    out = []
    for bname, block in net.named_modules():
        if not type(block).__name__.endswith("TransformerBlock"):
            continue
        for name, m in block.named_modules():
            if isinstance(m, nn.Linear) and name.split(".")[0] in ("attn", "attn1", "attn2", "ff", "ff_context"):
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
