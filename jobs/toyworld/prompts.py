"""Prompts from templates, each with its ground truth.

A prompt names one object (single scene) or two (pair scene, left to right). Each named object
is a Slot: a shape concept (object or superclass) plus the attributes the text states.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from jobs.toyworld.world import ATTRIBUTE_KINDS, ObjectSpec, World

SINGLE_TEMPLATES = ("a {0}", "a photo of a {0}", "an image of a {0}", "a drawing of a {0}",
                    "there is a {0}", "a picture of a {0}", "{0}")
PAIR_TEMPLATES = ("a {0} and a {1}", "a {0} next to a {1}", "a picture of a {0} and a {1}")


@dataclass(frozen=True)
class Slot:
    """One object a prompt asks for: `shape` is an object or superclass name; None = unstated."""

    shape: str
    colour: str | None = None
    size: str | None = None
    material: str | None = None

    def attribute(self, kind: str) -> str | None:
        return getattr(self, kind)

    def covers(self, world: World, spec: ObjectSpec) -> bool:
        """Whether a concrete object satisfies this slot."""
        shapes = world.superclasses.get(self.shape, (self.shape,))
        return spec.shape in shapes and all(
            self.attribute(k) in (None, spec.attribute(k)) for k in ATTRIBUTE_KINDS)


@dataclass(frozen=True)
class Prompt:
    text: str
    slots: tuple[Slot, ...]

    @property
    def is_pair(self) -> bool:
        return len(self.slots) == 2


def describe(world: World, slot: Slot, variant: int = 0) -> str:
    """Words for a slot; `variant` picks synonyms (0 = canonical words)."""
    words = []
    for kind in ("size", "colour", "material"):
        value = slot.attribute(kind)
        if value is not None:
            options = world.attribute_words[kind][value]
            words.append(options[variant % len(options)])
    options = world.words_for_object(slot.shape) if slot.shape in world.objects else (slot.shape,)
    words.append(options[variant % len(options)])
    return " ".join(words)


def single(world: World, slot: Slot, template: int = 0, variant: int = 0) -> Prompt:
    return Prompt(SINGLE_TEMPLATES[template].format(describe(world, slot, variant)), (slot,))


def pair(world: World, left: Slot, right: Slot, template: int = 0, variant: int = 0) -> Prompt:
    text = PAIR_TEMPLATES[template].format(describe(world, left, variant), describe(world, right, variant))
    return Prompt(text, (left, right))


def full_slot(spec: ObjectSpec) -> Slot:
    return Slot(spec.shape, spec.colour, spec.size, spec.material)


def sample_spec(world: World, slot: Slot, rng: np.random.Generator, allowed: set[ObjectSpec]) -> ObjectSpec:
    """A concrete object satisfying `slot`, drawn uniformly from `allowed`."""
    candidates = sorted((s for s in allowed if slot.covers(world, s)),
                        key=lambda s: (s.shape, s.colour, s.size, s.material))
    return candidates[int(rng.integers(len(candidates)))]


def sample_training_prompt(world: World, rng: np.random.Generator,
                           allowed: set[ObjectSpec]) -> tuple[Prompt, list[ObjectSpec]]:
    """A random training prompt and the concrete objects to render for it."""
    if rng.random() < 0.3:
        specs = [_pair_spec(world, rng, allowed) for _ in range(2)]
        slots = [Slot(s.shape, s.colour) for s in specs]
        return pair(world, *slots, template=int(rng.integers(len(PAIR_TEMPLATES))),
                    variant=int(rng.integers(2))), specs
    spec = sorted(allowed, key=lambda s: (s.shape, s.colour, s.size, s.material))[int(rng.integers(len(allowed)))]
    shape = world.superclass_of(spec.shape) if rng.random() < 0.1 else spec.shape
    kept = {k: spec.attribute(k) if rng.random() < 0.75 else None for k in ATTRIBUTE_KINDS}
    slot = Slot(shape, **kept)
    return single(world, slot, template=int(rng.integers(len(SINGLE_TEMPLATES))),
                  variant=int(rng.integers(2))), [spec]


def _pair_spec(world: World, rng: np.random.Generator, allowed: set[ObjectSpec]) -> ObjectSpec:
    """Objects in pair scenes are small and solid, so two fit side by side."""
    while True:
        shape = world.objects[int(rng.integers(len(world.objects)))]
        colour = world.values("colour")[int(rng.integers(len(world.colours)))]
        spec = pair_object(shape, colour)
        if spec in allowed:
            return spec


def pair_object(shape: str, colour: str) -> ObjectSpec:
    return ObjectSpec(shape, colour, "small", "solid")


def with_shape(slot: Slot, shape: str) -> Slot:
    return replace(slot, shape=shape)
