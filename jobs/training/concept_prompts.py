"""Prompts a method trains on for one concept: what to forget, what to map it to, what to keep.

On the toy world they come from the hierarchy; on a real model from text templates.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from jobs.toyworld.prompts import SINGLE_TEMPLATES, Slot, describe
from jobs.toyworld.world import ATTRIBUTE_KINDS, Concept, World, load_world

TEXT_TEMPLATES = ("a photo of a {}", "an image of a {}", "a picture of a {}", "{}", "a painting of a {}",
                  "a close-up photo of a {}")


@dataclass(frozen=True)
class ConceptPrompts:
    words: tuple[str, ...]        # every word naming the concept (name, members, synonyms)
    target: tuple[str, ...]       # prompts that draw the concept
    anchor: tuple[str, ...]       # the same prompts with the concept's word removed (aligned)
    preserve: tuple[str, ...]     # prompts of concepts to keep
    parts: tuple["ConceptPrompts", ...] = ()   # merged(): each concept's own prompts (a method may treat them apart)


def strip_words(text: str, words: tuple[str, ...]) -> str:
    """The prompt with the concept's words removed (the anchor the erased model should draw)."""
    pattern = r"\b(" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")\b"
    return re.sub(r"\s+", " ", re.sub(pattern, "", text)).strip()


def concept_words(world: World, name: str) -> tuple[str, ...]:
    c = world.concept(name)
    if c.kind == "variant":   # the object's words: "a red star" maps to "a red", keeping the colour word
        return world.words_for_object(c.shape)
    words = [name] + [w for m in world.members(c) for w in world.words_for_object(m)]
    if not c.is_shape:
        words = list(world.attribute_words[c.kind][name])
    return tuple(dict.fromkeys(words))


def _toy_variants(world: World, shape: str, n_per: int) -> list[str]:
    """Prompts for one shape word across templates and attribute phrasings."""
    colours, sizes, mats = world.values("colour"), world.values("size"), world.values("material")
    out = []
    for i in range(n_per):
        slot = Slot(shape, colour=colours[i % len(colours)] if i % 3 else None,
                    size=sizes[i % len(sizes)] if i % 2 else None,
                    material=mats[(i // 2) % len(mats)] if i % 4 == 3 else None)
        out.append(SINGLE_TEMPLATES[i % len(SINGLE_TEMPLATES)].format(describe(world, slot, variant=i // 5)))
    return out


def toy_concept_prompts(world: World, name: str, preserve: tuple[str, ...] = (), n_per_word: int = 8,
                        n_keep: int = 4) -> ConceptPrompts:
    """Target prompts use every word for the concept; preserve prompts cover every other object."""
    c = world.concept(name)
    if c.kind == "variant":
        return _variant_prompts(world, c, preserve, n_per_word, n_keep)
    if not c.is_shape:
        raise NotImplementedError(f"erasing attribute concepts ({c.kind} {name!r}) is not supported yet")
    words = concept_words(world, name)
    shapes = [name] + list(world.members(c)) if c.kind == "superclass" else [name]
    target = [p for s in shapes for p in _toy_variants(world, s, n_per_word)]
    target += [f"a {w}" for w in words if w not in shapes]
    keep = [o for o in world.objects if o not in world.members(c)] + list(preserve)
    preserve_prompts = [p for o in dict.fromkeys(keep) for p in _toy_variants(world, o, n_keep)]
    return ConceptPrompts(words, tuple(target), tuple(strip_words(t, words) for t in target),
                          tuple(preserve_prompts))


def _variant_prompts(world: World, c: Concept, preserve: tuple[str, ...], n_per: int,
                     n_keep: int) -> ConceptPrompts:
    """A variant ("red star"): its object's words in contexts with the fixed values; the same object
    with other values (the siblings the study watches) and every other object are kept."""
    words = concept_words(world, c.name)
    fixed = dict(c.fixed)
    free = [k for k in ATTRIBUTE_KINDS if k not in fixed]
    slots = [Slot(c.shape, **fixed)] + [Slot(c.shape, **{**fixed, k: v}) for k in free for v in world.values(k)]
    target = [SINGLE_TEMPLATES[i % len(SINGLE_TEMPLATES)].format(describe(world, s, variant=i // len(slots)))
              for i, s in enumerate(slots * max(1, -(-n_per // len(slots)) + 1))][:max(n_per, len(slots))]
    siblings = [Slot(c.shape, **{**fixed, k: o}) for k, v in c.fixed for o in world.values(k) if o != v]
    keep = [SINGLE_TEMPLATES[t].format(describe(world, s)) for s in siblings for t in range(n_keep)]
    others = [o for o in world.objects if o != c.shape] + list(preserve)
    keep += [p for o in dict.fromkeys(others) for p in _toy_variants(world, o, n_keep)]
    return ConceptPrompts(words, tuple(target), tuple(strip_words(t, words) for t in target), tuple(keep))


def text_concept_prompts(name: str, preserve: tuple[str, ...] = ()) -> ConceptPrompts:
    """For a real model: the concept in a few caption templates."""
    target = tuple(t.format(name) for t in TEXT_TEMPLATES)
    keep = tuple(t.format(p) for p in preserve for t in TEXT_TEMPLATES[:3])
    return ConceptPrompts((name,), target, tuple(strip_words(t, (name,)) for t in target), keep)


def concept_prompts(name: str, preserve: tuple[str, ...], world: str) -> ConceptPrompts:
    """The toy world's prompts for a model that draws it (world "toyworld"), else text templates."""
    if world == "toyworld":
        return toy_concept_prompts(load_world(), name, preserve)
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
