"""The checks the validator stops on and the gate decides on: certified both ways, or open."""
from __future__ import annotations

from erasecore.contracts import Estimate
from erasecore.gate_checks import CERTIFIED_FAIL, CERTIFIED_PASS, OPEN, Check, settled


def at_least(lower: float, upper: float, n: int = 50) -> Check:
    return Check("retain", Estimate((lower + upper) / 2, lower, upper, n), 0.95, at_least=True)


def at_most(lower: float, upper: float, n: int = 50) -> Check:
    return Check("drift", Estimate((lower + upper) / 2, lower, upper, n), 0.25, at_least=False)


def test_an_interval_wholly_on_one_side_is_certified_that_way():
    assert at_least(0.95, 0.99).status == CERTIFIED_PASS      # inclusive, as the point rule
    assert at_least(0.80, 0.94).status == CERTIFIED_FAIL
    assert at_least(0.90, 0.99).status == OPEN
    assert at_most(0.10, 0.25).status == CERTIFIED_PASS
    assert at_most(0.26, 0.40).status == CERTIFIED_FAIL
    assert at_most(0.20, 0.30).status == OPEN
    assert at_least(0.0, 0.0, n=0).status == OPEN             # nothing measured certifies nothing


def test_sampling_stops_on_one_certified_fail_or_all_certified_passes():
    assert settled([at_least(0.96, 0.99), at_most(0.05, 0.20)])
    assert settled([at_least(0.90, 0.99), at_most(0.30, 0.40)])      # drift certified fail: reject whatever follows
    assert not settled([at_least(0.90, 0.99), at_most(0.05, 0.20)])  # retain still open
