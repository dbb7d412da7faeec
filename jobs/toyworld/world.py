"""The toy concept world as typed data: hierarchy, attributes, vocabulary, held-out combinations.

Pure Python: no torch, so the orchestrator can validate concept names against it.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from erasecore.errors import UnknownConceptError

WORLD_FILE = Path(__file__).with_name("world.yaml")
ATTRIBUTE_KINDS = ("colour", "size", "material")
# The words prompt templates use around the concept words (jobs/toyworld/prompts.py builds them).
TEMPLATE_WORDS = ("a", "an", "photo", "of", "image", "drawing", "there", "is", "picture",
                  "and", "next", "to")


@dataclass(frozen=True)
class ObjectSpec:
    """One fully specified object in a scene."""

    shape: str
    colour: str
    size: str
    material: str

    def attribute(self, kind: str) -> str:
        return getattr(self, kind)


@dataclass(frozen=True)
class Concept:
    """Something a campaign can erase: an object, a superclass, an attribute value, or a variant.

    A variant is one object with some attributes fixed ("red star", "small blue circle",
    "outline square"): a leaf of the hierarchy below the object. `shape` and `fixed` say which.
    """

    name: str
    kind: str  # "object" | "superclass" | "colour" | "size" | "material" | "variant"
    shape: str = ""                              # variant only: its object
    fixed: tuple[tuple[str, str], ...] = ()      # variant only: (attribute kind, value), in ATTRIBUTE_KINDS order

    @property
    def is_shape(self) -> bool:
        return self.kind in ("object", "superclass")

    def attribute(self, kind: str) -> str | None:
        return dict(self.fixed).get(kind)


@dataclass(frozen=True)
class World:
    superclasses: dict[str, tuple[str, ...]]
    synonyms: dict[str, tuple[str, ...]]
    colours: dict[str, tuple[int, int, int]]
    sizes: dict[str, int]
    strokes: dict[str, int]
    attribute_words: dict[str, dict[str, tuple[str, ...]]]
    canvas_px: int
    background_rgb: tuple[int, int, int]
    held_out: frozenset[ObjectSpec]

    @property
    def objects(self) -> tuple[str, ...]:
        return tuple(o for members in self.superclasses.values() for o in members)

    def values(self, kind: str) -> tuple[str, ...]:
        return tuple(self.attribute_words[kind])

    def superclass_of(self, shape: str) -> str:
        for sup, members in self.superclasses.items():
            if shape in members:
                return sup
        raise UnknownConceptError(f"unknown object {shape!r}")

    def members(self, concept: Concept) -> tuple[str, ...]:
        """Objects a shape concept covers (a superclass covers its members)."""
        if concept.kind == "superclass":
            return self.superclasses[concept.name]
        if concept.kind == "object":
            return (concept.name,)
        return ()   # a variant covers part of one object, an attribute part of every object

    def covers(self, concept: Concept, shape: str, attributes: dict[str, str | None]) -> bool:
        """Whether an object (its shape and the attributes known of it) is an instance of `concept`.

        An unknown attribute (None) never matches a variant's fixed value: "a star" is not a "red star".
        """
        if concept.kind == "variant":
            return shape == concept.shape and all(attributes.get(k) == v for k, v in concept.fixed)
        if concept.is_shape:
            return shape in self.members(concept)
        return attributes.get(concept.kind) == concept.name

    def concept(self, name: str) -> Concept:
        """Resolve a concept name; raise UnknownConceptError with the known names."""
        if name in self.objects:
            return Concept(name, "object")
        if name in self.superclasses:
            return Concept(name, "superclass")
        for kind in ATTRIBUTE_KINDS:
            if name in self.attribute_words[kind]:
                return Concept(name, kind)
        variant = self._variant(name)
        if variant is not None:
            return variant
        known = ", ".join(sorted(self.objects + tuple(self.superclasses)))
        raise UnknownConceptError(f"unknown concept {name!r}; the toy world knows: {known}, and variants "
                                  f"'<attribute values> <object>' such as 'red star' or 'small blue circle'")

    def _variant(self, name: str) -> Concept | None:
        """'<values> <object>' with canonical values of distinct kinds; None if `name` is not one."""
        *values, shape = name.split()
        if not values or shape not in self.objects:
            return None
        kind_of = {v: k for k in ATTRIBUTE_KINDS for v in self.attribute_words[k]}
        kinds = [kind_of.get(v) for v in values]
        if None in kinds or len(set(kinds)) != len(kinds):
            return None
        fixed = tuple((k, values[kinds.index(k)]) for k in ATTRIBUTE_KINDS if k in kinds)
        return Concept(name, "variant", shape, fixed)

    def words_for_object(self, shape: str) -> tuple[str, ...]:
        return (shape,) + self.synonyms.get(shape, ())

    def vocabulary(self) -> tuple[str, ...]:
        """Every word a prompt may contain, in a fixed order."""
        words: list[str] = list(TEMPLATE_WORDS)
        words += list(self.superclasses)
        for shape in self.objects:
            words += self.words_for_object(shape)
        for kind in ATTRIBUTE_KINDS:
            for ws in self.attribute_words[kind].values():
                words += ws
        return tuple(dict.fromkeys(words))

    def all_specs(self) -> list[ObjectSpec]:
        return [ObjectSpec(*c) for c in itertools.product(
            self.objects, self.values("colour"), self.values("size"), self.values("material"))]

    def training_specs(self) -> list[ObjectSpec]:
        return [s for s in self.all_specs() if s not in self.held_out]


def _held_out(objects, colours, sizes, materials, per_object: int, seed: int) -> frozenset[ObjectSpec]:
    rng = random.Random(seed)
    held = []
    for shape in objects:
        combos = list(itertools.product(colours, sizes, materials))
        held += [ObjectSpec(shape, *c) for c in rng.sample(combos, per_object)]
    return frozenset(held)


@lru_cache(maxsize=4)
def load_world(path: str | Path = WORLD_FILE) -> World:
    """Read world.yaml into a World."""
    raw = yaml.safe_load(Path(path).read_text())
    attrs = raw["attributes"]
    words = {k: {v: tuple(d["words"]) for v, d in attrs[k].items()} for k in ATTRIBUTE_KINDS}
    supers = {k: tuple(v) for k, v in raw["superclasses"].items()}
    objects = [o for m in supers.values() for o in m]
    held = _held_out(objects, list(attrs["colour"]), list(attrs["size"]), list(attrs["material"]),
                     raw["held_out_per_object"], raw["held_out_seed"])
    return World(
        superclasses=supers,
        synonyms={k: tuple(v) for k, v in raw.get("synonyms", {}).items()},
        colours={k: tuple(d["rgb"]) for k, d in attrs["colour"].items()},
        sizes={k: d["px"] for k, d in attrs["size"].items()},
        strokes={k: d["stroke_px"] for k, d in attrs["material"].items()},
        attribute_words=words,
        canvas_px=raw["canvas_px"],
        background_rgb=tuple(raw["background_rgb"]),
        held_out=held,
    )
