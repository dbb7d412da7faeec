"""A CLIPTokenizer over the world's vocabulary, where every word is exactly one token."""
from __future__ import annotations

import json
import re
from pathlib import Path

from jobs.toyworld.world import UnknownConceptError, World

SPECIALS = ("<|startoftext|>", "<|endoftext|>")
MAX_LENGTH = 24


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's byte-pair merge loop: always apply the lowest-ranked adjacent pair."""
    while len(symbols) > 1:
        pairs = {(a, b) for a, b in zip(symbols, symbols[1:])}
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def _bpe_tables(words: tuple[str, ...]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """vocab.json and merges.txt contents under which each word is exactly one token.

    New merges are appended (lowest priority), so they never change how an earlier word splits.
    """
    chars = sorted({c for w in words for c in w})
    tokens = list(SPECIALS) + chars + [c + "</w>" for c in chars]
    ranks: dict[tuple[str, str], int] = {}
    for w in words:
        while len(parts := _bpe(list(w[:-1]) + [w[-1] + "</w>"], ranks)) > 1:
            ranks[(parts[0], parts[1])] = len(ranks)
            tokens.append(parts[0] + parts[1])
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return vocab, list(ranks)


def write_tokenizer_files(world: World, out_dir: Path) -> None:
    vocab, merges = _bpe_tables(world.vocabulary())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps(vocab))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))


def build_tokenizer(world: World, out_dir: Path):
    """Write the vocabulary files and return a CLIPTokenizer over them."""
    from transformers import CLIPTokenizer

    write_tokenizer_files(world, out_dir)
    return CLIPTokenizer(str(out_dir / "vocab.json"), str(out_dir / "merges.txt"),
                         model_max_length=MAX_LENGTH, pad_token="<|endoftext|>")


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def check_prompt(world: World, text: str) -> None:
    """Raise UnknownConceptError naming the first word outside the world's vocabulary."""
    known = set(world.vocabulary())
    for w in words_of(text):
        if w not in known:
            raise UnknownConceptError(f"unknown word {w!r} in prompt {text!r}: the toy world's "
                                      f"tokenizer only knows its own vocabulary")
