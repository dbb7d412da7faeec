import pytest

from jobs.validation.statistics import bonferroni, forgetting_interval, ratio_interval, wilson


def test_wilson_matches_known_binomial_cases():
    lo, hi = wilson(95, 100)
    assert lo == pytest.approx(0.888, abs=1e-3) and hi == pytest.approx(0.979, abs=1.5e-3)
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(0, 59)
    assert lo == 0.0 and 0.05 < hi < 0.07
    lo, hi = wilson(59, 59)
    assert hi == 1.0 and lo > 0.93


def test_intervals_narrow_with_n_and_widen_with_confidence():
    assert wilson(50, 100)[1] - wilson(50, 100)[0] > wilson(500, 1000)[1] - wilson(500, 1000)[0]
    assert wilson(50, 100, 0.99)[0] < wilson(50, 100, 0.95)[0]
    assert bonferroni(0.95, 5) == pytest.approx(0.99)


def test_forgetting_is_one_minus_the_retained_share_of_base_hits():
    v, lo, hi = forgetting_interval(5, 100, base=0.9, confidence=0.95)
    assert v == pytest.approx(1 - 0.05 / 0.9)
    assert lo < v < hi
    r, rlo, rhi = ratio_interval(90, 100, base=0.9, confidence=0.95)
    assert r == pytest.approx(1.0) and rlo < 1 < rhi
