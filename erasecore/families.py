"""Model families: which pipeline class belongs to which family.

Pure (json and os only): preflight reads it at config time, so a method that cannot apply to a
model (erasecore/catalog.py says which and why) is refused before a campaign starts, not in
the middle of one. The torch side (how each family encodes prompts, noises latents and calls its
denoiser) is jobs/models/adapters.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from erasecore.models import resolve

# model_index.json "_class_name" -> family. SD 2.x (including v-prediction) uses StableDiffusionPipeline.
FAMILY_OF_PIPELINE = {
    "StableDiffusionPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3",
    "FluxPipeline": "flux",
    "ZImagePipeline": "zimage",
}
DESCRIPTION = {
    "sd": "SD 1.x/2.x: UNet, one CLIP text encoder, cross-attention (attn2)",
    "sdxl": "SDXL: UNet, two CLIP text encoders (states concatenated, pooled + size ids), cross-attention",
    "sd3": "SD3: MMDiT transformer, joint text-image attention, flow matching",
    "flux": "FLUX.1: dual-stream (joint attention) then single-stream transformer blocks, T5 states + pooled CLIP, "
            "packed 2x2 latents, flow matching, guidance embedding (dev)",
    "zimage": "Z-Image: single-stream transformer, Qwen3 caption features refined alone (context_refiner) then "
              "sharing self-attention with the image tokens; no cross-attention; flow matching",
}
def family_of(pipeline_class: str) -> str | None:
    """The family of a diffusers pipeline class name, or None for one no method is ported to."""
    return FAMILY_OF_PIPELINE.get(pipeline_class)


def unsupported_pipeline(pipeline_class: str, model: str | None = None) -> str:
    """The one line for a pipeline class outside every family."""
    known = ", ".join(f"{f} ({c})" for c, f in FAMILY_OF_PIPELINE.items())
    what = f"model {model!r} is a {pipeline_class}" if model else pipeline_class
    return f"{what}; the erasure methods are ported to {known} only"


def pipeline_class(model: str) -> str | None:
    """The pipeline class a model reference names, read from its model_index.json without loading it.

    None when the file is not on this machine (a hub id that is not in the Hugging Face cache) or
    is unreadable: the loader then says what is wrong, before any step runs.
    """
    ref = resolve(model)
    index = Path(ref) / "model_index.json"
    if not index.is_file() and ref.count("/") == 1 and not Path(ref).exists():
        index = hub_cache_file(ref, "model_index.json")
    try:
        name = json.loads(index.read_text()).get("_class_name") if index is not None else None
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def hub_cache_file(repo_id: str, filename: str) -> Path | None:
    """`filename` of a hub model in the local Hugging Face cache (the revision refs/main points at)."""
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
    root = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    try:
        revision = (root / "refs" / "main").read_text().strip()
    except OSError:
        return None
    path = root / "snapshots" / revision / filename
    return path if path.is_file() else None
