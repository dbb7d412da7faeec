"""An attention processor that also keeps the cross-attention probabilities (Forget-Me-Not, MACE), and what
MACE reads from them: where an image attends to the concept (masks) and the attention inside them."""
from __future__ import annotations

import torch


class ProbeProcessor:
    """Plain scaled-dot-product cross-attention that appends its (B*heads, queries, tokens) probabilities."""

    def __init__(self, store: list[torch.Tensor]):
        self.store = store

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **_):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, attention_mask)
        self.store.append(probs)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        return attn.to_out[1](attn.to_out[0](out))


def install(modules: dict[str, torch.nn.Module], store: list[torch.Tensor]) -> dict[str, object]:
    """Swap probes into `modules`; returns the previous processors for restore()."""
    previous = {}
    for name, m in modules.items():
        previous[name] = m.processor
        m.set_processor(ProbeProcessor(store))
    return previous


def restore(modules: dict[str, torch.nn.Module], previous: dict[str, object]) -> None:
    for name, m in modules.items():
        m.set_processor(previous[name])


@torch.no_grad()
def concept_maps(probs: list[torch.Tensor], token_mask: torch.Tensor, size: int) -> torch.Tensor:
    """(B, size, size) where the image attends to the concept's tokens, from one forward's probe record.

    probs: cross-attention probabilities (B*heads, queries, tokens) per layer; token_mask (B, tokens)
    marks the concept's tokens. Each layer's map (attention on those tokens, mean over heads) is resized
    to size x size and scaled to max 1 per image; the layers are averaged.
    """
    import torch.nn.functional as F

    b = token_mask.shape[0]
    total = torch.zeros(b, size, size)
    for p in probs:
        heads, side = p.shape[0] // b, int(round(p.shape[1] ** 0.5))
        on_concept = (p.float() * token_mask.repeat_interleave(heads, 0)[:, None, :].float()).sum(-1)
        m = on_concept.view(b, heads, side, side).mean(1, keepdim=True)
        m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        total += m / m.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    return total / len(probs)


def threshold_masks(maps: torch.Tensor, quantile: float) -> torch.Tensor:
    """Boolean masks: a pixel is in when its map value is above its image's `quantile`. How masks are had
    for generated images without a segmenter (MACE's authors use Grounded-SAM)."""
    return maps > torch.quantile(maps.flatten(1), quantile, dim=1).view(-1, 1, 1)


def masked_attention(probs: list[torch.Tensor], token_mask: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """MACE's attention loss: sum over layers of the Frobenius norm of the concept tokens' attention
    inside each image's mask (masks (B, s, s), resized to each layer's query grid, nearest)."""
    import torch.nn.functional as F

    b = token_mask.shape[0]
    total = 0.0
    for p in probs:
        heads, side = p.shape[0] // b, int(round(p.shape[1] ** 0.5))
        region = F.interpolate(masks[:, None].float(), size=(side, side), mode="nearest").flatten(1)   # (B, Q)
        weight = region[:, :, None] * token_mask[:, None, :].to(p.dtype)                              # (B, Q, T)
        total = total + (p * weight.repeat_interleave(heads, 0)).norm()
    return total
