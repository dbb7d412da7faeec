"""A validation suite: prompts in groups, each item asking one question a judge answers.

Groups: target; evasion (subclass, composition, paraphrase); retain (near, far); leakage; cumulative:<c>
for concepts erased before. Built by a judge's provider (jobs/validation/providers.py): from a concept
set (jobs/validation/concept_suite.py), or from a world of its own (the toy world's: jobs/toyworld/suite.py).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

EVASION_KINDS = ("subclass", "composition", "paraphrase")

SWEEP = "(sweep)"   # a sweep suite's target: no concept is being erased


@dataclass(frozen=True)
class SuiteItem:
    prompt: object      # anything with .text and .is_pair: the toy world's Prompt (slots), a concept set's TextPrompt
    group: str          # "target" | "evasion:<kind>" | "retain:near" | "retain:far" | "leakage" | "cumulative:<c>"
    concept: str        # the concept this item checks for (target, or the retained object, or earlier concept)


@dataclass(frozen=True)
class Suite:
    target: str
    items: tuple[SuiteItem, ...]
    unjudged: dict[str, str] = field(default_factory=dict)   # group left out -> why its judge cannot answer it
    thin: bool = False                                       # built from templates alone (not in the concept set)

    def digest(self) -> str:
        rows = [(i.prompt.text, i.group, i.concept) for i in self.items]
        return hashlib.sha256(json.dumps([self.target, rows]).encode()).hexdigest()[:16]

    def groups(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.group for i in self.items))
