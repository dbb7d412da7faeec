"""Interval estimates for the gate. Pure Python (no torch, no numpy): the orchestrator may use it too."""
from __future__ import annotations

import math
from statistics import NormalDist


def z_value(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval for k successes in n trials; (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    z = z_value(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bonferroni(confidence: float, looks: int) -> float:
    """Per-look confidence so that `looks` sequential checks keep the overall error rate."""
    return 1 - (1 - confidence) / max(1, looks)


def ratio_interval(k: int, n: int, base: float, confidence: float) -> tuple[float, float, float]:
    """(value, lower, upper) of (k/n) / base, treating the cached base rate as known."""
    if n == 0 or base <= 0:
        return 0.0, 0.0, 0.0
    lo, hi = wilson(k, n, confidence)
    return (k / n) / base, lo / base, hi / base


def forgetting_interval(k: int, n: int, base: float, confidence: float) -> tuple[float, float, float]:
    """(value, lower, upper) of 1 - acc/base: the share of the base model's hits that are gone."""
    v, lo, hi = ratio_interval(k, n, base, confidence)
    return 1 - v, 1 - hi, 1 - lo
