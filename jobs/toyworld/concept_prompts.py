"""An erase step's prompts on the toy world: what to forget, what to map it to, what to keep, from the
hierarchy (every word naming the concept, its members, attribute phrasings; the rest of the world kept).
The ConceptPrompts they fill, and the text templates of a real model, are jobs/training/concept_prompts.py's.
"""
from __future__ import annotations

from jobs.toyworld.prompts import SINGLE_TEMPLATES, Slot, describe
from jobs.toyworld.world import ATTRIBUTE_KINDS, Concept, World
from jobs.training.concept_prompts import ConceptPrompts, strip_words


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
