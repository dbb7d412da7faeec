"""Concept sets: what a campaign's concepts are, as data (configs/concepts/*.yaml). Pure (yaml only).

A concept set names, per concept, its kind (object | superclass | style | person | nudity | attribute),
its superclass and subclasses, synonyms and paraphrases, the attribute axes its compositions use,
near neighbours and far (unrelated) concepts to retain, the concepts its attributes may leak onto,
and the prompt templates of each kind. The validation suite of any model is built from it; the
judge named by the set (or the campaign) answers the suite's questions.

    concept_set = load_concept_set("toyworld")            # a shipped set, or a path to a YAML file
    entry = concept_set.entry("star")                      # UnknownConceptError naming the known ones
    entry = concept_set.entry("unicorn", allow_thin=True)  # templates only: a thin suite
    entry = concept_set.entry("small red star")            # a variant: an object with attribute values fixed
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from erasecore.errors import ConfigError, UnknownConceptError

SHIPPED = Path(__file__).resolve().parents[1] / "configs" / "concepts"
KINDS = ("object", "superclass", "style", "person", "nudity", "attribute")
_FIELDS = ("kind", "superclass", "subclasses", "synonyms", "paraphrases", "attributes", "axis", "near", "far",
           "leakage")


@dataclass(frozen=True)
class ConceptEntry:
    name: str
    kind: str
    superclass: str = ""
    subclasses: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()
    paraphrases: tuple[str, ...] = ()
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)   # axis -> values for compositions
    axis: str = ""                       # attribute kind only: which axis this value belongs to
    near: tuple[str, ...] = ()           # neighbours that must survive (siblings, look-alikes)
    far: tuple[str, ...] = ()            # unrelated concepts that must survive
    leakage: tuple[str, ...] = ()        # concepts this one's attributes may move onto in a pair prompt
    thin: bool = False                   # not in the set: built from templates alone

    @property
    def words(self) -> tuple[str, ...]:
        """Every word naming the concept: its name, synonyms, and (a superclass) its members."""
        return tuple(dict.fromkeys((self.name, *self.synonyms, *self.subclasses)))


@dataclass(frozen=True)
class ConceptSet:
    name: str
    judge: str                                   # the judge that answers this set's questions by default
    templates: dict[str, tuple[str, ...]]        # kind -> prompt templates with one "{}" each
    concepts: dict[str, ConceptEntry]
    source: str = ""

    def entry(self, name: str, allow_thin: bool = False) -> ConceptEntry:
        """The concept's entry; a thin one (templates only) when allowed, else UnknownConceptError."""
        if name in self.concepts:
            return self.concepts[name]
        variant = self.variant(name)
        if variant is not None:
            return variant
        if allow_thin:
            return ConceptEntry(name, "object", thin=True)
        known = ", ".join(sorted(n for n, e in self.concepts.items() if e.kind != "attribute"))
        raise UnknownConceptError(f"unknown concept {name!r}; the {self.name} concept set ({self.source}) "
                                  f"knows: {known}")


    def variant(self, name: str) -> ConceptEntry | None:
        """'<attribute values> <object>' ("small red star"): the object's leaf with those values fixed, kind
        "variant", its object as parent; None unless every leading word is an attribute of its own axis."""
        *values, obj = name.split()
        if not values or obj not in self.concepts or self.concepts[obj].kind != "object":
            return None
        entries = [self.concepts.get(v) for v in values]
        if any(e is None or e.kind != "attribute" for e in entries):
            return None
        axes = [e.axis for e in entries]
        if len(set(axes)) != len(axes):
            return None
        return ConceptEntry(name, "variant", superclass=obj, attributes={a: (v,) for a, v in zip(axes, values)})


def expand_members(concepts: list[str] | tuple[str, ...], concept_set: ConceptSet) -> tuple[str, ...]:
    """The campaign's queue with every superclass preceded by its members (`expand: members`).

    Each member becomes a gated step of its own, then the superclass word: the progressive order the
    side-effects study found to erase what one step on the word leaves behind. A member already in the
    queue keeps its first place and is not erased twice."""
    out: list[str] = []
    for name in concepts:
        entry = concept_set.entry(name, allow_thin=True)
        if entry.kind == "superclass":
            out += [m for m in entry.subclasses if m not in out]
        if name not in out:
            out.append(name)
    return tuple(out)


GROUP_JOIN = " + "   # a group step's name: its members in queue order, joined ("red star + blue star")


def step_members(step: str) -> tuple[str, ...]:
    """The concepts one step erases: a group step's members, else the step's own concept."""
    return tuple(m.strip() for m in step.split(GROUP_JOIN.strip()))


def erased_by(steps: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Every concept the steps erase, in order (a group step's members in its place), each once (`steps: auto`
    queues a member after its group step)."""
    return tuple(dict.fromkeys(m for s in steps for m in step_members(s)))


def group_steps(concepts: list[str] | tuple[str, ...], concept_set: ConceptSet) -> tuple[str, ...]:
    """The campaign's queue as group steps (`steps: group`): concepts that share a parent (the variants of
    one object, the members of one superclass) are erased in one gated step, at the first one's place;
    a concept that shares its parent with no other stays a step of its own."""
    parent = {c: concept_set.entry(c, allow_thin=True).superclass for c in concepts}
    groups: dict[str, list[str]] = {}
    for c in concepts:
        groups.setdefault(parent[c] or f"\0{c}", []).append(c)   # no parent: a group of its own
    out: list[str] = []
    for c in concepts:
        members = groups[parent[c] or f"\0{c}"]
        if members[0] == c:
            out.append(GROUP_JOIN.join(members))
    return tuple(out)


def auto_steps(concepts: list[str] | tuple[str, ...], concept_set: ConceptSet) -> tuple[str, ...]:
    """The queue of `steps: auto`: each group step (group_steps) followed by its members one at a time. The
    campaign runs the group step first; its members' own steps run only if it is refused (a committed
    group step covers them: orchestrator/campaign.py). Settling a settled queue gives it back (a resume
    settles the journal's spec.yaml again): members already queued after their group step are not grouped
    a second time."""
    queued = {m for c in concepts if len(step_members(c)) > 1 for m in step_members(c)}
    return tuple(s for g in group_steps([c for c in concepts if c not in queued], concept_set)
                 for s in ((g, *step_members(g)) if len(step_members(g)) > 1 else (g,)))


def concept_set_path(ref: str) -> Path:
    """A shipped set's name (configs/concepts/<name>.yaml) or a path to a concept-set YAML file."""
    shipped = SHIPPED / f"{ref}.yaml"
    return shipped if "/" not in ref and not ref.endswith((".yaml", ".yml")) else Path(ref)


def load_concept_set(ref: str) -> ConceptSet:
    """Read and check a concept set; ConfigError (one line) naming the file and the key."""
    path = concept_set_path(ref)
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in SHIPPED.glob("*.yaml")))
        raise ConfigError(f"concepts_from: no concept set {ref!r} (no file {path}; shipped: {shipped})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"concepts_from: cannot read {path}: {' '.join(str(e).split())}") from None
    return parse_concept_set(raw, str(path))


def parse_concept_set(raw: Any, source: str) -> ConceptSet:
    def fail(message: str):
        raise ConfigError(f"{source}: {message}")

    if not isinstance(raw, dict) or not isinstance(raw.get("concepts"), dict) or not raw["concepts"]:
        fail("a concept set is a mapping with name, judge, templates and a non-empty concepts mapping")
    templates = raw.get("templates") or {}
    if not isinstance(templates, dict):
        fail("templates must map a kind to a list of prompts with one {}")
    for kind, items in templates.items():
        if kind not in KINDS or not isinstance(items, list) or not all(isinstance(t, str) and t.count("{}") == 1
                                                                         for t in items):
            fail(f"templates.{kind}: a kind ({', '.join(KINDS)}) mapping to prompts with exactly one {{}}")
    concepts = {str(name): _entry(str(name), body, fail) for name, body in raw["concepts"].items()}
    for entry in concepts.values():
        for ref in (*entry.subclasses, *entry.near, *entry.far, *entry.leakage,
                    *([entry.superclass] if entry.superclass else [])):
            if ref not in concepts:
                fail(f"concepts.{entry.name} names {ref!r}, which the set does not define")
    return ConceptSet(str(raw.get("name", Path(source).stem)), str(raw.get("judge", "")),
                      {k: tuple(v) for k, v in templates.items()}, concepts, source)


def _entry(name: str, body: Any, fail) -> ConceptEntry:
    if not isinstance(body, dict):
        fail(f"concepts.{name} must be a mapping with at least a kind")
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        fail(f"concepts.{name}: unknown key {unknown[0]!r}; known: {', '.join(_FIELDS)}")
    if body.get("kind") not in KINDS:
        fail(f"concepts.{name}.kind must be one of {', '.join(KINDS)}, got {body.get('kind')!r}")
    lists = {k: _strings(body.get(k, []), f"concepts.{name}.{k}", fail)
             for k in ("subclasses", "synonyms", "paraphrases", "near", "far", "leakage")}
    attributes = body.get("attributes", {}) or {}
    if not isinstance(attributes, dict):
        fail(f"concepts.{name}.attributes must map an axis to a list of values")
    return ConceptEntry(name, body["kind"], str(body.get("superclass", "") or ""), axis=str(body.get("axis", "") or ""),
                        attributes={a: _strings(v, f"concepts.{name}.attributes.{a}", fail)
                                    for a, v in attributes.items()}, **lists)


def _strings(value: Any, key: str, fail) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        fail(f"{key} must be a list of non-empty strings")
    return tuple(value)
