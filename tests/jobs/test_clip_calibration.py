"""The zero-shot judge's calibration (jobs/validation/judges/calibration.py): a threshold fitted to a stated
false-positive target on one half of the base images, checked on the other half."""
from __future__ import annotations

import numpy as np

from jobs.validation.judges.calibration import (
    FALLBACK,
    Scored,
    calibrate,
    fitted,
    halves,
    threshold,
)


def test_the_threshold_lets_through_at_most_the_target_share_of_other_images():
    other = list(np.linspace(0.0, 0.39, 40))             # 40 scores: 5% allows 2 at or above the threshold
    t = threshold(other, 0.05)
    assert sum(s >= t for s in other) == 2 and t > sorted(other)[-3]
    assert sum(s >= threshold(other, 0.0) for s in other) == 0
    assert threshold([], 0.05) == FALLBACK


def test_the_fitted_threshold_sits_in_the_gap_not_at_the_edge_of_the_other_images():
    # Other images score at most 0.05 bar two (the target lets 5% through), the concept's own from 0.3 up: the
    # lowest threshold meeting the target alone is just above 0.05, where an image between the two (a shape
    # half-erased into a neighbour, scoring 0.1) would count as the concept; the fitted one is mid-gap.
    other = [0.01] * 38 + [0.05, 0.6]
    own = [0.3, 0.5, 0.7, 0.9]
    t = fitted(own, other, 0.05)
    assert threshold(other, 0.05) < 0.1 < t <= 0.3 and t == (0.05 + 0.3) / 2
    assert sum(s >= t for s in other) <= 2 and all(s >= t for s in own)
    # The target still binds: where the best separation would let too many other images through, it is not taken
    crowded = [0.01] * 30 + [0.4] * 10
    assert sum(s >= fitted(own, crowded, 0.05) for s in crowded) <= 1
    assert fitted([], other) == fitted(own, []) == FALLBACK


def test_ties_at_the_cut_stay_below_the_threshold():
    t = threshold([0.2] * 10 + [0.9], 0.1)                 # one allowed: the 0.9; the ten 0.2s must not pass
    assert 0.2 < t <= 0.9 and sum(s >= t for s in [0.2] * 10 + [0.9]) == 1


def test_halves_split_by_seed_when_there_are_several_else_by_prompt():
    two_seeds = [Scored(0.5, True, item, seed) for item in range(3) for seed in range(2)]
    fit, check = halves(two_seeds)
    assert {s.seed for s in fit} == {0} and {s.seed for s in check} == {1}
    one_seed = [Scored(0.5, True, item, 0) for item in range(4)]
    fit, check = halves(one_seed)
    assert [s.item for s in fit] == [0, 2] and [s.item for s in check] == [1, 3]


def test_the_check_half_measures_what_the_fit_half_did_not_see():
    rng = np.random.default_rng(0)
    own = [Scored(float(x), True, i, s) for i, x in enumerate(rng.uniform(0.5, 1.0, 40)) for s in (0, 1)]
    other = [Scored(float(x), False, 100 + i, s) for i, x in enumerate(rng.uniform(0.0, 0.45, 80)) for s in (0, 1)]
    c = calibrate("star", own + other)
    assert c.check_hit == 1.0 and c.check_false_positive <= 0.05 and c.check_own == 40 and c.check_other == 80
    # An other image scoring like the concept's own, only in the check half: the check sees it, the fit did not.
    leaky = calibrate("star", own + other + [Scored(0.95, False, 999, 1)])
    assert leaky.threshold == c.threshold and leaky.check_false_positive > c.check_false_positive


def test_a_midpoint_would_miss_the_target_where_the_fitted_threshold_keeps_it():
    # Other images with a heavy tail: the midpoint of the means (about 0.46) lets 30% of them through.
    own = [Scored(0.8, True, i, s) for i in range(20) for s in (0, 1)]
    other = [Scored(0.1 if i % 10 < 7 else 0.7, False, 100 + i, s) for i in range(40) for s in (0, 1)]
    c = calibrate("star", own + other, target=0.05)
    midpoint = (0.8 + np.mean([s.score for s in other])) / 2
    assert np.mean([s.score >= midpoint for s in other]) > 0.25
    assert c.check_false_positive <= 0.05 and c.threshold > 0.7 and c.check_hit == 1.0
