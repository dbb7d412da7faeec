"""Prompts a method trains on for one concept: what to forget, what to map it to, what to keep.

On a model that draws a world of its own (the toy world) they come from that world's provider
(jobs/validation/providers.py; the toy world's: jobs/toyworld/concept_prompts.py); on a real model
from text templates.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from erasecore.concepts import step_members

TEXT_TEMPLATES = ("a photo of a {}", "an image of a {}", "a picture of a {}", "{}", "a painting of a {}",
                  "a close-up photo of a {}")


@dataclass(frozen=True)
class ConceptPrompts:
    words: tuple[str, ...]        # every word naming the concept (name, members, synonyms)
    target: tuple[str, ...]       # prompts that draw the concept
    anchor: tuple[str, ...]       # the same prompts with the concept's word removed (aligned)
    preserve: tuple[str, ...]     # prompts of concepts to keep
    parts: tuple["ConceptPrompts", ...] = ()   # merged(): each concept's own prompts (a method may treat them apart)


def replace_words(text: str, words: tuple[str, ...], by: str) -> str:
    """The prompt with the concept's words replaced by `by` ("" removes them)."""
    pattern = r"\b(" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")\b"
    return re.sub(r"\s+", " ", re.sub(pattern, by, text)).strip()


def strip_words(text: str, words: tuple[str, ...]) -> str:
    """The prompt with the concept's words removed (the anchor the erased model should draw)."""
    return replace_words(text, words, "")


def text_concept_prompts(name: str, preserve: tuple[str, ...] = ()) -> ConceptPrompts:
    """For a real model: the concept in a few caption templates."""
    target = tuple(t.format(name) for t in TEXT_TEMPLATES)
    keep = tuple(t.format(p) for p in preserve for t in TEXT_TEMPLATES[:3])
    return ConceptPrompts((name,), target, tuple(strip_words(t, (name,)) for t in target), keep)


def concept_prompts(name: str, preserve: tuple[str, ...], world: str) -> ConceptPrompts:
    """The prompts of the world a model draws (`world`: the judge whose provider has it, e.g. "toyworld"),
    else ("") text templates. A group step's are its members' prompts merged (each kept apart in `parts`)."""
    members = step_members(name)
    if len(members) > 1:
        return merged([concept_prompts(m, preserve, world) for m in members])
    if world:
        from jobs.validation import providers

        return providers.get(world).concept_prompts(name, preserve)
    return text_concept_prompts(name, preserve)


def merged(parts: list[ConceptPrompts]) -> ConceptPrompts:
    """Several concepts as one erasure target (the all-at-once baseline): union of targets, keep the rest.

    The result keeps each concept's own prompts in `parts` (MACE trains one LoRA per part and fuses them)."""
    words = tuple(dict.fromkeys(w for p in parts for w in p.words))
    keep = tuple(dict.fromkeys(p for part in parts for p in part.preserve
                               if not any(w in p.split() for w in words)))
    return ConceptPrompts(words, tuple(t for p in parts for t in p.target),
                          tuple(a for p in parts for a in p.anchor), keep,
                          tuple(q for p in parts for q in (p.parts or (p,))))
