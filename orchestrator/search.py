"""A step's candidate search (the campaign's `search:` section): what a concept tries after its first attempt
is rejected, in place of the retry ladder. Pure, like the retry policy it stands in for.

The candidates are `search.candidates` in their order, then the grid `search.methods` x `search.strengths`
(each factor times the method's strength knob's catalog default). Before each concept they are ordered by
what this campaign committed for concepts of the same kind: a candidate that committed for an earlier
concept of that kind goes first, the most recent first; the rest keep their order. The order is a function
of the journal (its commits and the attempts' settings), so a resumed campaign tries the same candidates in
the same order. A candidate guided to one of the concept's own words (SPEED's `guide: heart` for "red heart")
is left out of that concept's plan: it maps the concept onto itself. A concept's budget is
`search.max_attempts` attempts (its first included; 0: each candidate once) and `search.max_seconds` wall
seconds of its finished attempts (0: no limit).

Selection bias: a concept that had several gates, the last one passing, may have passed by chance (the best
of several noisy looks). With `search.confirm`, a candidate that passed after another was rejected is
measured again on fresh seeds (`confirm_seed_offset`) and commits only if that gate passes too.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from erasecore import catalog
from erasecore.concepts import step_members
from orchestrator.spec import CampaignSpec

CONFIRM_SEEDS = 1000   # the confirmation of attempt n draws noise seeds from seed_offset + n * 1000 on


@dataclass(frozen=True)
class Setting:
    """A method with hyperparameter overrides: what an attempt runs."""

    method: str
    hparams: tuple[tuple[str, Any], ...]   # sorted (name, value) pairs: hashable, order-free

    @staticmethod
    def of(method: str, hparams: Mapping[str, Any]) -> Setting:
        return Setting(method, tuple(sorted((k, _frozen(v)) for k, v in hparams.items())))

    def overrides(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.hparams}


def active(spec: CampaignSpec) -> bool:
    return bool(spec.search.candidates or spec.search.methods)


def candidates(spec: CampaignSpec) -> tuple[Setting, ...]:
    """The declared candidates, then the grid; each setting once, in that order."""
    s = spec.search
    found = [Setting.of(c.method, c.hparams) for c in s.candidates]
    for method in s.methods:
        entry = catalog.get(method)
        base = {**spec.hparams.get(method, {})}
        default = entry.resolve(base)[entry.strength]
        for factor in s.strengths:
            found.append(Setting.of(method, {**base, entry.strength: strength(entry, default * factor)}))
    return tuple(dict.fromkeys(found))


def strength(entry: catalog.MethodEntry, value: float) -> float | int:
    """A value for the method's strength knob: one that counts steps stays a whole number >= 1."""
    return max(1, round(value)) if isinstance(entry.default_strength, int) else value


def ordered(spec: CampaignSpec, preferred: Sequence[Setting]) -> tuple[Setting, ...]:
    """The candidates, those in `preferred` (committed for same-kind concepts, most recent first) first."""
    pool = candidates(spec)
    first = [p for p in dict.fromkeys(preferred) if p in pool]
    return tuple(first) + tuple(c for c in pool if c not in first)


def plan(spec: CampaignSpec, preferred: Sequence[Setting] = (), concept: str = "") -> tuple[Setting, ...]:
    """Every attempt a concept may make, in order: `method` first (unless search.from_first), then the
    ordered candidates but those guided to one of `concept`'s own words, cut to search.max_attempts."""
    first = () if spec.search.from_first else (Setting.of(spec.method, spec.hparams.get(spec.method, {})),)
    own = own_words(concept)
    out = tuple(s for s in dict.fromkeys(first + ordered(spec, preferred)) if not guided_to(s, own))
    return out[:spec.search.max_attempts] if spec.search.max_attempts else out


def own_words(concept: str) -> frozenset[str]:
    """The words of a concept's name and of its group step's members ("red heart + green heart")."""
    return frozenset(w for member in step_members(concept) for w in member.lower().split())


def guided_to(setting: Setting, words: frozenset[str]) -> bool:
    """A candidate that maps the concept onto a word of its own (SPEED guided to "heart" for "red heart")
    erases nothing: the gate would only measure that, at an attempt of the concept's budget."""
    guide = dict(setting.hparams).get("guide")
    return isinstance(guide, str) and guide.lower() in words


def confirm_seed_offset(spec: CampaignSpec, attempt: int) -> int:
    """Fresh noise for attempt n's confirmation: never a seed of the gate or of another confirmation."""
    return spec.validation.seed_offset + attempt * CONFIRM_SEEDS


def needs_confirmation(spec: CampaignSpec, rejected_before: int) -> bool:
    """A passing attempt that came after `rejected_before` rejected ones of its concept was chosen among
    several looks: confirm it (when the search asks)."""
    return active(spec) and spec.search.confirm and rejected_before > 0


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
