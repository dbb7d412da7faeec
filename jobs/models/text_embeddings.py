"""Prompt embeddings as the denoiser's attention sees them, and where a concept's tokens sit."""
from __future__ import annotations

import torch


def encode(pipe, prompts: list[str] | tuple[str, ...]) -> torch.Tensor:
    """(N, L, D) text states for the prompts (no classifier-free guidance pairing), in any family.

    Methods that also need pooled embeddings or size ids use jobs.models.adapters.adapter(pipe).encode.
    """
    from jobs.models.adapters import adapter

    return adapter(pipe).encode(prompts).states


def token_ids(pipe, prompts) -> torch.Tensor:
    # SDXL's second tokenizer shares the first's vocabulary: positions found here hold for both halves.
    tok = pipe.tokenizer
    return tok(list(prompts), padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").input_ids


def last_token_index(pipe, prompts) -> torch.Tensor:
    """(N,) position of each prompt's last real token: the one before end-of-text (start-of-text for "")."""
    tok = pipe.tokenizer
    mask = tok(list(prompts), padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").attention_mask
    return mask.sum(1) - 2


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
