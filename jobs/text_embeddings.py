"""Prompt embeddings as the denoiser's cross-attention sees them, and where a concept's tokens sit."""
from __future__ import annotations

import torch


@torch.no_grad()
def encode(pipe, prompts: list[str] | tuple[str, ...]) -> torch.Tensor:
    """(N, L, D) text-encoder states for the prompts (no classifier-free guidance pairing)."""
    emb, _ = pipe.encode_prompt(list(prompts), pipe.device, 1, False)
    return emb


def token_ids(pipe, prompts) -> torch.Tensor:
    tok = pipe.tokenizer
    return tok(list(prompts), padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").input_ids


def concept_positions(pipe, prompts, words: tuple[str, ...]) -> torch.Tensor:
    """Boolean (N, L): True at the tokens that spell any of `words` in each prompt."""
    ids = token_ids(pipe, prompts)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for w in words:
        wid = pipe.tokenizer(w, add_special_tokens=False).input_ids
        n = len(wid)
        for row in range(ids.shape[0]):
            seq = ids[row].tolist()
            for i in range(len(seq) - n + 1):
                if seq[i:i + n] == wid:
                    mask[row, i:i + n] = True
    return mask
