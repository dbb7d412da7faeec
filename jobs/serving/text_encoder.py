"""The served pipeline's own text encoder as the pre-filter's Embedder (erasecore/prompt_filter.py).

The model draws what its text encoder reads: a word it reads as an erased concept is the concept, whether or
not the concept set lists it. Each text is encoded the way the pipeline encodes a prompt (its tokenizer, padded
to the model's length) and summarised by the encoder's pooled output (CLIP: the end-of-text state), or the mean
of its token states for an encoder without one. Adapters are switched off by the caller while it embeds
(jobs/serving/guarded.py): the filter reads prompts with the base encoder its anchors were made with.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


class TextEncoderEmbedder:
    """texts -> one vector each, from `pipe.tokenizer` and `pipe.text_encoder`."""

    def __init__(self, pipe, batch: int = 64):
        self.tokenizer, self.encoder, self.batch = pipe.tokenizer, pipe.text_encoder, batch

    @staticmethod
    def available(pipe) -> bool:
        return getattr(pipe, "tokenizer", None) is not None and getattr(pipe, "text_encoder", None) is not None

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        device = self.encoder.device
        for i in range(0, len(texts), self.batch):
            ids = self.tokenizer(list(texts[i:i + self.batch]), padding="max_length", truncation=True,
                                 max_length=self.tokenizer.model_max_length, return_tensors="pt")
            states = self.encoder(ids.input_ids.to(device))
            pooled = getattr(states, "pooler_output", None)
            if pooled is None or pooled.dim() != 2:
                mask = ids.attention_mask.to(device)[..., None].to(states.last_hidden_state.dtype)
                pooled = (states.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1)
            out += pooled.float().cpu().tolist()
        return out
