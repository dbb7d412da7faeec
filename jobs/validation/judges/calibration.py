"""A zero-shot judge's per-concept threshold, fitted on one half of the base model's images and checked on the other.

For a concept, the base images drawn for it ("own") and those drawn for other concepts ("other") each give the
judge's score for the concept. The images split in two halves by noise seed (even seeds fit, odd seeds check;
with one seed per prompt, by prompt: even items fit, odd check). On the fit half the threshold maximises the hit
rate on own images minus the false-positive rate on other ones (Youden's J) among the thresholds that keep false
positives at or under FALSE_POSITIVE_TARGET (of n other images, at most floor(target x n) at or above it), and
sits in the middle of the range of scores where that best value holds. The lowest threshold that meets the
target alone sits at the upper edge of the other images' scores: a candidate's images of an erased concept
(a neighbour drawn in its place, a shape between two) score between the two groups, and there it would count
them as the concept (measured on the toy CLIP: an erased circle read as present in 10 of 24 images where the
evaluator saw 1). The check half then says how the threshold does on images it was not fitted on: its hit rate
on own images and its false-positive rate on other ones. A midpoint of two means states no error rate; this
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


def fitted(own: Sequence[float], other: Sequence[float], target: float = FALSE_POSITIVE_TARGET) -> float:
    """The middle of the score range where hit rate minus false-positive rate is best, among the thresholds
    whose false positives meet `target` (the lowest such range; FALLBACK with no own or no other image)."""
    if not own or not other:
        return FALLBACK
    lowest = threshold(other, target)    # every threshold at or above it meets the target
    cuts = sorted({lowest, *(s for s in (*own, *other) if s >= lowest)})
    youden = [np.mean([s >= c for s in own]) - np.mean([s >= c for s in other]) for c in cuts]
    first = last = int(np.argmax(youden))
    while last + 1 < len(cuts) and youden[last + 1] == youden[first]:
        last += 1
    # A threshold in (cuts[k-1], cuts[k]] counts the images cuts[k] counts: the best range is (lo, cuts[last]]
    lo = cuts[first - 1] if first else lowest
    mid = (lo + cuts[last]) / 2
    return float(mid if mid > lo or not first else cuts[last])


def calibrate(concept: str, scored: Sequence[Scored], target: float = FALSE_POSITIVE_TARGET) -> Calibration:
    fit, check = halves(scored)
    if not any(s.own for s in fit) and not any(not s.own for s in fit):
        fit = list(scored)   # too few images to split: fit on all, the check repeats the fit
    t = fitted([s.score for s in fit if s.own], [s.score for s in fit if not s.own], target)
    check = check or fit
    own = [s.score >= t for s in check if s.own]
    other = [s.score >= t for s in check if not s.own]
    return Calibration(concept, t, len(fit), _share(own), _share(other), len(own), len(other))


def _share(flags: Sequence[bool]) -> float:
    return float(np.mean(flags)) if flags else 0.0
