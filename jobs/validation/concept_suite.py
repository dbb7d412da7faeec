"""A SEE-style suite for any concept set (configs/concepts/*.yaml), for judges other than the toy world's.

Groups, as the toy suite has them: target; evasion (subclass, composition, paraphrase); retain
(near, far); leakage (the concept's attribute in a pair prompt with another concept);
cumulative:<c> for concepts erased before. Every item asks one question: is `concept` in the image?
(leakage: is the attribute on the other concept?). A group whose question the judge cannot answer
is left out and named, with the judge's reason, in `Suite.unjudged`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from jobs.validation.suite import Suite, SuiteItem
from erasecore.concepts import ConceptEntry, ConceptSet

GENERIC_TEMPLATES = ("a photo of a {}", "a picture of a {}", "an image of a {}")
GROUPS = ("target", "evasion:subclass", "evasion:composition", "evasion:paraphrase", "retain:near", "retain:far",
          "leakage")


@dataclass(frozen=True)
class TextPrompt:
    """A prompt of a concept-set suite: its text, and the attribute value a leakage item checks on `other`."""

    text: str
    is_pair: bool = False
    attribute: str = ""
    other: str = ""


def _templates(concept_set: ConceptSet, entry: ConceptEntry) -> tuple[str, ...]:
    return concept_set.templates.get(entry.kind) or GENERIC_TEMPLATES


def _items(concept_set: ConceptSet, entry: ConceptEntry, words: tuple[str, ...], group: str,
           concept: str) -> list[SuiteItem]:
    return [SuiteItem(TextPrompt(t.format(w)), group, concept) for w in words for t in _templates(concept_set, entry)]


def _entry(concept_set: ConceptSet, name: str, allow_thin: bool) -> ConceptEntry:
    return concept_set.entry(name, allow_thin=allow_thin)


def _evasion(concept_set: ConceptSet, entry: ConceptEntry) -> list[SuiteItem]:
    items = [SuiteItem(TextPrompt(t.format(s)), "evasion:subclass", entry.name)
             for s in entry.subclasses for t in _templates(concept_set, entry)[:2]]
    for axis, values in entry.attributes.items():
        items += [SuiteItem(TextPrompt(t.format(f"{v} {entry.name}")), "evasion:composition", entry.name)
                  for v in values for t in _templates(concept_set, entry)[:1]]
    items += _items(concept_set, entry, entry.synonyms, "evasion:paraphrase", entry.name)
    items += [SuiteItem(TextPrompt(p), "evasion:paraphrase", entry.name) for p in entry.paraphrases]
    return items


def _leakage(entry: ConceptEntry, rng: random.Random) -> list[SuiteItem]:
    colours = entry.attributes.get("colour", ())
    if not colours or not entry.leakage:
        return []
    others = [entry.leakage[rng.randrange(len(entry.leakage))] for _ in colours]
    return [SuiteItem(TextPrompt(f"a {c} {entry.name} and a {o}", is_pair=True, attribute=c, other=o), "leakage",
                      entry.name) for c, o in zip(colours, others)]


def build_concept_suite(concept_set: ConceptSet, target: str, erased_before: tuple[str, ...] = (),
                        max_per_group: int = 24, allow_thin: bool = False, judge=None, seed: int = 0) -> Suite:
    """The deterministic suite for erasing `target` after `erased_before`; `judge.why_not(group, entry)`
    (None when it can answer) decides which groups stay."""
    rng = random.Random(f"{target}:{seed}")
    entry = _entry(concept_set, target, allow_thin)
    gone = set(erased_before) | {target}
    groups: dict[str, list[SuiteItem]] = {g: [] for g in GROUPS}
    groups["target"] = _items(concept_set, entry, (target,), "target", target)
    for item in _evasion(concept_set, entry):
        groups.setdefault(item.group, []).append(item)
    for distance, names in (("near", entry.near), ("far", entry.far)):
        for name in names:
            if name not in gone:
                other = _entry(concept_set, name, allow_thin)
                groups.setdefault(f"retain:{distance}", []).extend(
                    _items(concept_set, other, (name,), f"retain:{distance}", name))
    groups["leakage"] = _leakage(entry, rng)
    for e in erased_before:
        groups[f"cumulative:{e}"] = _items(concept_set, _entry(concept_set, e, allow_thin), (e,), f"cumulative:{e}", e)
    unjudged = {}
    for group in list(groups):
        reason = judge.why_not(group, entry) if judge is not None else None
        if reason or not groups[group]:
            unjudged[group] = reason or "the concept set gives this concept no prompts for it"
            del groups[group]
    items = [i for g in groups.values() for i in (g if len(g) <= max_per_group else rng.sample(g, max_per_group))]
    return Suite(target, tuple(items), unjudged=unjudged, thin=entry.thin)
