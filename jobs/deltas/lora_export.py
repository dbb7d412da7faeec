"""Deltas out as LoRA files other tools load: diffusers (load_lora_weights) and kohya/ComfyUI/A1111.

Dense changes become LoRA factors by truncated SVD; LoRA deltas are kept as they are, or stacked
exactly by concatenating their factors along the rank. Scaling is made explicit in both formats:

- diffusers: alpha/rank is folded into lora_B and every module has one rank, so the file is right
  under the loaders' default (alpha = rank) without network alphas or adapter metadata.
- kohya: each module carries its true ".alpha" (diffusers' convert_state_dict_to_kohya would
  write alpha = rank, wrong whenever lora_alpha != r).

ComfyUI names: UNet and CLIP modules kohya's way ("lora_unet_...", "lora_te_..."); a DiT's transformer
(SD3, Flux, Z-Image) under diffusers' own module names with a "transformer." prefix, which is what
ComfyUI's comfy/lora.py maps for those families (model_lora_keys_unet: "transformer.{}" through
mmdit_to_diffusers, flux_to_diffusers and, for Z-Image's Lumina2 base, z_image_to_diffusers, which
also splits to_q/to_k/to_v onto its fused qkv), with kohya's lora_down/lora_up/alpha suffixes.

Text-encoder modules are written under CLIP's classic names ("text_model.encoder.layers..."), which
every loader knows, even where transformers 5 names them "encoder.layers..." in memory.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from jobs.deltas.delta import LORA_A, LORA_B, DeltaError, DeltaMeta, dense_change, read_safetensors, write_safetensors

DIFFUSERS_WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # what load_lora_weights(dir) looks for
KOHYA_PREFIXES = {"unet": "lora_unet_", "text_encoder": "lora_te_", "text_encoder_2": "lora_te2_"}
DIFFUSERS_NAMED = ("transformer",)   # components ComfyUI reads under "<component>.<diffusers module>"

Loaded = tuple[Mapping[str, torch.Tensor], DeltaMeta]  # what jobs.deltas.load_delta returns


class LoraFormatError(DeltaError):
    """Deltas that cannot be written as the LoRA asked for, or a LoRA file that does not fit a pipeline."""


@dataclass(frozen=True)
class LoraFit:
    """LoRA factors for a change: every module at `rank`, change = alpha / rank * B @ A.

    `rel_error` per module is ||D - change||_F / ||D||_F of the truncated SVD (0.0 when exact);
    `skipped` lists dense keys left out because they are not 2-D (biases, norms, convolutions).
    """

    tensors: dict[str, torch.Tensor]
    rank: int
    alpha: float
    rel_error: dict[str, float] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    @property
    def max_rel_error(self) -> float:
        return max(self.rel_error.values(), default=0.0)

    @property
    def modules(self) -> list[str]:
        """'<component>.<module>' names, sorted."""
        return sorted(k[: -len(LORA_A)] for k in self.tensors if k.endswith(LORA_A))


@dataclass(frozen=True)
class ExportedLora:
    path: str
    sha256: str
    fit: LoraFit


def canonical_module(module: str) -> str:
    """'<component>.<module>' under the names LoRA files use: CLIP text encoders keep "text_model."."""
    comp, _, name = module.partition(".")
    if comp.startswith("text_encoder") and not name.startswith(("text_model.", "text_projection")):
        return f"{comp}.text_model.{name}"
    return module


def _svd_factors(change: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(A, B, relative error) with B @ A the best rank-`rank` approximation; zero-padded to `rank`."""
    u, s, vh = torch.linalg.svd(change.double(), full_matrices=False)
    k = min(rank, s.numel())
    root = s[:k].sqrt()
    a = torch.zeros(rank, change.shape[1], dtype=torch.float64)
    b = torch.zeros(change.shape[0], rank, dtype=torch.float64)
    a[:k], b[:, :k] = root[:, None] * vh[:k], u[:, :k] * root
    total = s.square().sum()
    err = (s[k:].square().sum() / total).sqrt().item() if total > 0 else 0.0
    return a.float(), b.float(), err


def dense_to_lora(tensors: Mapping[str, torch.Tensor], rank: int, skip_non_2d: bool = False) -> LoraFit:
    """Truncated SVD of each 2-D change "<component>.<module>.weight" into rank-`rank` factors (alpha = rank).

    Non-2-D changes raise LoraFormatError naming the key, or with skip_non_2d are left out and
    listed in `skipped` (a LoRA cannot carry them: the exported file then misses part of the change).
    """
    if rank <= 0:
        raise LoraFormatError(f"LoRA rank must be positive, got {rank}")
    out, errors, skipped = {}, {}, []
    for key in sorted(tensors):
        change = tensors[key]
        if change.dim() != 2 or not key.endswith(".weight"):
            if skip_non_2d:
                skipped.append(key)
                continue
            raise LoraFormatError(f"cannot express {key!r} (shape {tuple(change.shape)}) as LoRA: only 2-D "
                                  "Linear weights can be; leave such tensors out with skip_non_2d (erase export --skip-non-2d)")
        module = key[: -len(".weight")]
        a, b, errors[module] = _svd_factors(change, rank)
        out[module + LORA_A], out[module + LORA_B] = a, b
    if not out:
        raise LoraFormatError("no 2-D weight change to express as LoRA")
    return LoraFit(out, rank, float(rank), errors, tuple(skipped))


def _concatenate(deltas: Sequence[Loaded]) -> LoraFit:
    """Stack LoRA deltas exactly: factors side by side along the rank, each scale folded into its B."""
    shapes: dict[str, tuple[int, int]] = {}
    for tensors, _ in deltas:
        for key, a in tensors.items():
            if key.endswith(LORA_A):
                module = key[: -len(LORA_A)]
                shapes[module] = (tensors[module + LORA_B].shape[0], a.shape[1])
    total = sum(meta.rank for _, meta in deltas)
    out = {}
    for module, (n_out, n_in) in sorted(shapes.items()):
        a_parts, b_parts = [], []
        for tensors, meta in deltas:
            a, b = tensors.get(module + LORA_A), tensors.get(module + LORA_B)
            # A module a delta does not touch gets zero factors, keeping every module at one rank.
            a_parts.append(a.float() if a is not None else torch.zeros(meta.rank, n_in))
            b_parts.append(meta.scale * b.float() if b is not None else torch.zeros(n_out, meta.rank))
        out[module + LORA_A], out[module + LORA_B] = torch.cat(a_parts, 0), torch.cat(b_parts, 1)
    return LoraFit(out, total, float(total), {m: 0.0 for m in shapes})


def combine(deltas: Sequence[Loaded], rank: int | None = None, skip_non_2d: bool = False) -> LoraFit:
    """One LoRA for the sum of deltas.

    rank None: LoRA deltas only, exact (a single delta as is, several concatenated: rank = sum).
    rank given: sum the dense changes of all deltas, then truncated SVD at that rank.
    Keys come out under canonical_module names.
    """
    if not deltas:
        raise LoraFormatError("no deltas to export")
    # One name per module, whichever transformers version named it, so stacked changes meet.
    deltas = [({canonical_module(k): v for k, v in tensors.items()}, meta) for tensors, meta in deltas]
    if rank is None:
        dense = [meta for _, meta in deltas if meta.kind != "lora"]
        if dense:
            raise LoraFormatError(f"delta {dense[0].method}/{dense[0].concept} is dense: "
                                  "give a rank to export it as LoRA (truncated SVD)")
        if len(deltas) == 1:
            tensors, meta = deltas[0]
            modules = [k[: -len(LORA_A)] for k in tensors if k.endswith(LORA_A)]
            return LoraFit({k: v.float() for k, v in tensors.items()}, meta.rank, meta.alpha,
                           {m: 0.0 for m in modules})
        return _concatenate(deltas)
    summed: dict[str, torch.Tensor] = {}
    for tensors, meta in deltas:
        for key, change in dense_change(tensors, meta).items():
            summed[key] = summed[key] + change if key in summed else change
    return dense_to_lora(summed, rank, skip_non_2d)


def _sources(deltas: Sequence[Loaded]) -> str:
    return json.dumps([{"method": m.method, "concept": m.concept, "kind": m.kind} for _, m in deltas])


def export_diffusers_lora(deltas: Sequence[Loaded], out_dir: str | Path, rank: int | None = None,
                          skip_non_2d: bool = False, dtype: torch.dtype = torch.float32) -> ExportedLora:
    """Write out_dir/pytorch_lora_weights.safetensors for `pipe.load_lora_weights(out_dir)`.

    Keys are peft/diffusers style "<component>.<module>.lora_A.weight" / "lora_B.weight"
    (unet, text_encoder, or transformer for DiT pipelines). alpha/rank is folded into lora_B.
    """
    fit = combine(deltas, rank, skip_non_2d)
    scale = fit.alpha / fit.rank
    tensors = {}
    for module in fit.modules:
        name = canonical_module(module)
        tensors[name + LORA_A] = fit.tensors[module + LORA_A].to(dtype)
        tensors[name + LORA_B] = (scale * fit.tensors[module + LORA_B]).to(dtype)
    path = Path(out_dir) / DIFFUSERS_WEIGHT_NAME
    metadata = {"format": "pt", "erase_sources": _sources(deltas)}
    return ExportedLora(str(path), write_safetensors(tensors, metadata, path), fit)


def kohya_name(module: str) -> str:
    """'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k' -> 'lora_unet_down_blocks_0_..._attn2_to_k';
    'transformer.context_embedder' stays as it is (ComfyUI reads DiT LoRAs under diffusers' names)."""
    comp, _, name = canonical_module(module).partition(".")
    if comp in DIFFUSERS_NAMED:
        return f"{comp}.{name}"
    if comp not in KOHYA_PREFIXES:
        raise LoraFormatError(f"kohya format has no name for component {comp!r} "
                              f"(supported: {', '.join((*KOHYA_PREFIXES, *DIFFUSERS_NAMED))})")
    return KOHYA_PREFIXES[comp] + name.replace(".", "_")


def export_kohya_lora(deltas: Sequence[Loaded], out_path: str | Path, rank: int | None = None,
                      skip_non_2d: bool = False, dtype: torch.dtype = torch.float32) -> ExportedLora:
    """Write one kohya-format .safetensors (ComfyUI, A1111, diffusers load_lora_weights for SD 1.x).

    Per module: "<name>.lora_down.weight" (A), "<name>.lora_up.weight" (B), "<name>.alpha" (the
    true alpha as a 0-d float32, so loaders' alpha / rank equals the delta's scale).
    """
    path = Path(out_path)
    if path.suffix != ".safetensors":
        raise LoraFormatError(f"kohya LoRA {path}: the file name must end in .safetensors")
    fit = combine(deltas, rank, skip_non_2d)
    tensors = {}
    for module in fit.modules:
        name = kohya_name(module)
        tensors[f"{name}.lora_down.weight"] = fit.tensors[module + LORA_A].to(dtype)
        tensors[f"{name}.lora_up.weight"] = fit.tensors[module + LORA_B].to(dtype)
        tensors[f"{name}.alpha"] = torch.tensor(float(fit.alpha), dtype=torch.float32)
    metadata = {"format": "pt", "ss_network_module": "networks.lora", "ss_network_dim": str(fit.rank),
                "ss_network_alpha": repr(float(fit.alpha)), "erase_sources": _sources(deltas)}
    return ExportedLora(str(path), write_safetensors(tensors, metadata, path), fit)


def read_kohya_lora(path: str | Path, pipe, method: str = "kohya-import", concept: str = "") -> Loaded:
    """A kohya-format LoRA file as a lora delta on `pipe`'s own module names.

    Names are resolved against the pipeline's Linear modules (kohya's "_" is ambiguous). Each
    module's alpha/rank is folded into lora_B and ranks are zero-padded to the largest, so the
    delta has one rank and alpha = rank. Unknown names raise LoraFormatError.
    """
    tensors, _, _ = read_safetensors(path, what=f"LoRA {path}")
    modules = {}
    for comp in (*KOHYA_PREFIXES, *DIFFUSERS_NAMED):
        component = getattr(pipe, comp, None)
        if isinstance(component, torch.nn.Module):
            for name, m in component.named_modules():
                if isinstance(m, torch.nn.Linear):
                    modules[kohya_name(f"{comp}.{name}")] = f"{comp}.{name}"
    downs = {k.removesuffix(".lora_down.weight"): v for k, v in tensors.items() if k.endswith(".lora_down.weight")}
    if not downs:
        raise LoraFormatError(f"LoRA {path} has no kohya '.lora_down.weight' tensors")
    rank = max(a.shape[0] for a in downs.values())
    out = {}
    for name, a in sorted(downs.items()):
        if name not in modules:
            raise LoraFormatError(f"LoRA {path}: {name!r} names no Linear module of this pipeline")
        b = tensors[f"{name}.lora_up.weight"].float()
        r = a.shape[0]
        alpha = tensors[f"{name}.alpha"].item() if f"{name}.alpha" in tensors else r
        pad_a, pad_b = torch.zeros(rank - r, a.shape[1]), torch.zeros(b.shape[0], rank - r)
        out[modules[name] + LORA_A] = torch.cat([a.float(), pad_a], 0)
        out[modules[name] + LORA_B] = torch.cat([alpha / r * b, pad_b], 1)
    return out, DeltaMeta("lora", method, concept, {"source": str(path)}, rank=rank, alpha=float(rank))
