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
    """Ids aligned with the states encode() returns (the family adapter knows which tokenizer makes them:
    CLIP's for SD/SDXL/SD3, T5's for Flux, Qwen's over the chat template for Z-Image)."""
    from jobs.models.adapters import adapter

    return adapter(pipe).token_ids(prompts)[0]


def word_spellings(tokenizer, word: str) -> list[list[int]]:
    """The id sequences that spell `word` inside a prompt: alone and after a space (byte-level BPE such as
    Qwen's spells " star" with its own token, CLIP and T5 the same either way)."""
    out = []
    for text in (word, " " + word):
        ids = tokenizer(text, add_special_tokens=False).input_ids
        if ids and ids not in out:
            out.append(ids)
    return out


def last_token_index(pipe, prompts) -> torch.Tensor:
    """(N,) position of each prompt's last real token: the one before end-of-text (start-of-text for "")."""
    tok = pipe.tokenizer
    mask = tok(list(prompts), padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").attention_mask
    return mask.sum(1) - 2


def concept_positions(pipe, prompts, words: tuple[str, ...]) -> torch.Tensor:
    """Boolean (N, L): True at the tokens that spell any of `words` in each prompt."""
    from jobs.models.adapters import adapter

    ids, tok = adapter(pipe).token_ids(prompts)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for w in words:
        for wid in word_spellings(tok, w):
            n = len(wid)
            for row in range(ids.shape[0]):
                seq = ids[row].tolist()
                for i in range(len(seq) - n + 1):
                    if seq[i:i + n] == wid:
                        mask[row, i:i + n] = True
    return mask
