"""Parameter drift over a campaign: how far base + committed deltas + a candidate moved each layer group.

    groups = layer_groups(pipe)                # "<component>.<parameter>" -> group, on the base pipeline
    drift = parameter_drift(pipe, refs)        # group -> ParamDrift(norm of the summed deltas, relative)

Sequential erasure is reported to lose utility as changes accumulate; the norm of the summed deltas
per group says where they accumulate. Groups, by where the prompt enters the image (jobs/models/targets.py):
text_kv (the text-facing attention's keys and values: what closed-form edits change), attention (every
other attention projection), feed_forward, other (convolutions, norms, embeddings) and text_encoder.
Computed from the delta files and the base weights only: the pipeline is read, never changed.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from jobs.deltas.delta import dense_change, load_delta
from jobs.models.targets import cross_attention_params, denoiser
from erasecore.contracts import DeltaRef, ParamDrift

GROUPS = ("text_kv", "attention", "feed_forward", "other", "text_encoder")
FEED_FORWARD = ("ff", "ff_context", "feed_forward")
ATTENTION = ("attn", "attn1", "attn2", "attention")   # the attention modules' names in every family


def _group_of(name: str, text_kv: set[str]) -> str:
    """The group of one denoiser parameter name (a module path)."""
    if name in text_kv:
        return "text_kv"
    parts = name.split(".")
    if any(p in FEED_FORWARD for p in parts):
        return "feed_forward"
    if any(p in ATTENTION for p in parts[:-1]):
        return "attention"
    return "other"


def layer_groups(pipe) -> dict[str, str]:
    """Every parameter of the denoiser and the text encoders, keyed as delta files key them, -> its group."""
    comp, net = denoiser(pipe)
    text_kv = set(cross_attention_params(net, ("to_k", "to_v")))
    out = {f"{comp}.{n}": _group_of(n, text_kv) for n, _ in net.named_parameters()}
    for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module):
            out.update({f"{name}.{n}": "text_encoder" for n, _ in module.named_parameters()})
    return out


def summed_change(refs: Sequence[DeltaRef]) -> dict[str, torch.Tensor]:
    """The dense change of all `refs` together (float32, CPU), one delta file in memory at a time."""
    total: dict[str, torch.Tensor] = {}
    for ref in refs:
        tensors, meta = load_delta(ref.path, ref.sha256)
        for key, change in dense_change(tensors, meta).items():
            total[key] = total[key] + change if key in total else change.clone()
        del tensors
    return total


def _base_group_norms(pipe, groups: Mapping[str, str]) -> dict[str, float]:
    squares = dict.fromkeys(GROUPS, 0.0)
    for comp in {k.partition(".")[0] for k in groups}:
        for n, p in getattr(pipe, comp).named_parameters():
            group = groups.get(f"{comp}.{n}")
            if group is not None:
                squares[group] += float(p.detach().float().pow(2).sum())
    return {g: s ** 0.5 for g, s in squares.items()}


def _group_for_key(key: str, groups: Mapping[str, str]) -> str:
    if key in groups:
        return groups[key]
    comp = key.partition(".")[0]
    # A delta written by another library version (text_model. level) still lands in its component's group.
    return "text_encoder" if comp.startswith("text_encoder") else _group_of(key.partition(".")[2], set())


def parameter_drift(pipe, refs: Sequence[DeltaRef]) -> dict[str, ParamDrift]:
    """Per group of the base pipeline `pipe`: the norm of the summed deltas and that norm / the base weights'.

    Groups the model does not have (no text encoder loaded) are left out; untouched groups read 0."""
    groups = layer_groups(pipe)
    squares = dict.fromkeys(GROUPS, 0.0)
    for key, change in summed_change(refs).items():
        squares[_group_for_key(key, groups)] += float(change.pow(2).sum())
    base = _base_group_norms(pipe, groups)
    return {g: ParamDrift(norm=squares[g] ** 0.5, relative=squares[g] ** 0.5 / base[g])
            for g in GROUPS if base[g] > 0}
