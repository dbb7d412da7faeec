"""A SEE-style suite for any concept set (configs/concepts/*.yaml), for judges other than the toy world's.

Groups, asked as the toy suite asks them (jobs/toyworld/suite.py): target, retain (near, far) and
cumulative:<c> (concepts erased before) ask each concept plainly and with each single attribute value in
the set's first template ("a car", "a red car"); evasion asks the subclasses, the compositions and the
plain word in the other templates, and the synonyms and paraphrases; leakage asks whether the target's
attribute lands on another concept asked for another value ("a red car and a blue bus": is the bus red?).
A concept with no attributes (a style, nudity) is asked in every template instead. A group whose question
the judge cannot answer is left out and named, with the judge's reason, in `Suite.unjudged`.
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


def _forms(entry: ConceptEntry) -> tuple[str, ...]:
    """The concept plainly and with each single attribute value ("car", "red car", "small car"): what a
    target, retain or cumulative group asks, in the first template, as the toy suite asks its objects."""
    if entry.kind == "variant":
        return (entry.name,)   # its values are in its name
    return (entry.name, *(f"{v} {entry.name}" for values in entry.attributes.values() for v in values))


def _plain(concept_set: ConceptSet, entry: ConceptEntry, group: str, concept: str) -> list[SuiteItem]:
    """The concept's forms in the first template; a concept with no attributes (a style, nudity) in every
    template instead, so its group is not one prompt."""
    if len(_forms(entry)) == 1:
        return _items(concept_set, entry, (entry.name,), group, concept)
    first = _templates(concept_set, entry)[0]
    return [SuiteItem(TextPrompt(first.format(w)), group, concept) for w in _forms(entry)]


def _entry(concept_set: ConceptSet, name: str, allow_thin: bool) -> ConceptEntry:
    return concept_set.entry(name, allow_thin=allow_thin)


def _evasion(concept_set: ConceptSet, entry: ConceptEntry) -> list[SuiteItem]:
    """Subclasses; compositions and the plain word in the other templates (phrasings the target group does not
    use, the bare word among them where the set has a "{}" template); synonyms and paraphrases."""
    templates = _templates(concept_set, entry)
    items = [SuiteItem(TextPrompt(t.format(s)), "evasion:subclass", entry.name)
             for s in entry.subclasses for t in templates[:2]]
    others = templates[1:] or templates
    composed = _forms(entry)[1:]
    items += [SuiteItem(TextPrompt(others[i % len(others)].format(w)), "evasion:composition", entry.name)
              for i, w in enumerate(composed)]
    if composed:   # else the target group asks every template already
        items += [SuiteItem(TextPrompt(t.format(entry.name)), "evasion:paraphrase", entry.name) for t in templates[1:]]
    items += _items(concept_set, entry, entry.synonyms, "evasion:paraphrase", entry.name)
    items += [SuiteItem(TextPrompt(p), "evasion:paraphrase", entry.name) for p in entry.paraphrases]
    return items


def _leakage(entry: ConceptEntry, rng: random.Random) -> list[SuiteItem]:
    """One pair per colour: the target in that colour beside another concept asked for a different colour
    ("a red car and a blue bus": is the bus red?). With the other's colour unstated, the question would
    measure the base model's own choice of colour (a red bus one time in four), not an attribute leaking."""
    colours = entry.attributes.get("colour", ())
    if len(colours) < 2 or not entry.leakage:
        return []
    items = []
    for i, c in enumerate(colours):
        other = entry.leakage[rng.randrange(len(entry.leakage))]
        asked = colours[(i + 1 + rng.randrange(len(colours) - 1)) % len(colours)]
        items.append(SuiteItem(TextPrompt(f"a {c} {entry.name} and a {asked} {other}", is_pair=True, attribute=c,
                                          other=other), "leakage", entry.name))
    return items


def build_concept_suite(concept_set: ConceptSet, target: str, erased_before: tuple[str, ...] = (),
                        max_per_group: int = 24, allow_thin: bool = False, judge=None, seed: int = 0) -> Suite:
    """The deterministic suite for erasing `target` after `erased_before`; `judge.why_not(group, entry)`
    (None when it can answer) decides which groups stay."""
    rng = random.Random(f"{target}:{seed}")
    entry = _entry(concept_set, target, allow_thin)
    gone = set(erased_before) | {target}
    groups: dict[str, list[SuiteItem]] = {g: [] for g in GROUPS}
    groups["target"] = _plain(concept_set, entry, "target", target)
    for item in _evasion(concept_set, entry):
        groups.setdefault(item.group, []).append(item)
    for distance, names in (("near", entry.near), ("far", entry.far)):
        for name in names:
            if name not in gone:
                other = _entry(concept_set, name, allow_thin)
                groups.setdefault(f"retain:{distance}", []).extend(_plain(concept_set, other, f"retain:{distance}", name))
    groups["leakage"] = _leakage(entry, rng)
    for e in erased_before:
        groups[f"cumulative:{e}"] = _plain(concept_set, _entry(concept_set, e, allow_thin), f"cumulative:{e}", e)
    unjudged = {}
    for group in list(groups):
        reason = judge.why_not(group, entry) if judge is not None else None
        if reason or not groups[group]:
            unjudged[group] = reason or "the concept set gives this concept no prompts for it"
            del groups[group]
    items = [i for g in groups.values() for i in (g if len(g) <= max_per_group else rng.sample(g, max_per_group))]
    return Suite(target, tuple(items), unjudged=unjudged, thin=entry.thin)
