"""A zero-shot judge's per-concept threshold, fitted on one half of the base model's images and checked on the other.

For a concept, the base images drawn for it ("own") and those drawn for other concepts ("other") each give the
judge's score for the concept. The images split in two halves by noise seed (even seeds fit, odd seeds check;
with one seed per prompt, by prompt: even items fit, odd check). The threshold is the lowest score that keeps the
fit half's false positives at or under FALSE_POSITIVE_TARGET: of its n other images, at most floor(target x n)
score at or above it. The check half then says how the threshold does on images it was not fitted on: its hit
rate on own images and its false-positive rate on other ones. A midpoint of two means states no error rate; this
states the one it aims at and measures the one it gets.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FALSE_POSITIVE_TARGET = 0.05
FALLBACK = 0.5   # no image of the concept or of another: nothing to fit on


@dataclass(frozen=True)
class Scored:
    """One base image's score for a concept, and whether it was drawn for that concept."""

    score: float
    own: bool
    item: int
    seed: int


@dataclass(frozen=True)
class Calibration:
    concept: str
    threshold: float
    fit_images: int
    check_hit: float             # share of the check half's own images at or above the threshold
    check_false_positive: float  # share of the check half's other images at or above it
    check_own: int
    check_other: int

    def row(self) -> dict[str, float]:
        """The numbers a JudgeIdentity keeps (its calibration table)."""
        return {"threshold": self.threshold, "false_positive_target": FALSE_POSITIVE_TARGET,
                "fit_images": float(self.fit_images), "check_hit": self.check_hit,
                "check_false_positive": self.check_false_positive, "check_own": float(self.check_own),
                "check_other": float(self.check_other)}


def halves(scored: Sequence[Scored]) -> tuple[list[Scored], list[Scored]]:
    """(fit, check): by seed parity when there are several seeds, else by prompt parity."""
    by_seed = len({s.seed for s in scored}) > 1
    fit = [s for s in scored if (s.seed if by_seed else s.item) % 2 == 0]
    return fit, [s for s in scored if (s.seed if by_seed else s.item) % 2 == 1]


def threshold(other: Sequence[float], target: float = FALSE_POSITIVE_TARGET) -> float:
    """The lowest threshold with at most floor(target x n) of `other` at or above it (FALLBACK when empty)."""
    if not other:
        return FALLBACK
    ranked = sorted(other, reverse=True)
    allowed = math.floor(target * len(ranked))
    cut = ranked[allowed] if allowed < len(ranked) else ranked[-1]
    return float(np.nextafter(cut, np.inf))   # scores equal to the cut stay below the threshold


def calibrate(concept: str, scored: Sequence[Scored], target: float = FALSE_POSITIVE_TARGET) -> Calibration:
    fit, check = halves(scored)
    if not any(s.own for s in fit) and not any(not s.own for s in fit):
        fit = list(scored)   # too few images to split: fit on all, the check repeats the fit
    t = threshold([s.score for s in fit if not s.own], target) if any(s.own for s in fit) else FALLBACK
    check = check or fit
    own = [s.score >= t for s in check if s.own]
    other = [s.score >= t for s in check if not s.own]
    return Calibration(concept, t, len(fit), _share(own), _share(other), len(own), len(other))


def _share(flags: Sequence[bool]) -> float:
    return float(np.mean(flags)) if flags else 0.0
