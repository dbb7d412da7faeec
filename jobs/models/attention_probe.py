"""An attention processor that also keeps the cross-attention probabilities (for Forget-Me-Not)."""
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
