"""Interval arithmetic shared by the reports and the run's watch: means with Student-t 95% half-widths."""

from __future__ import annotations

import math

from scipy import stats


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of its 95% t interval); the half-width is inf for fewer than 2 values."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_ci95 of no values")
    mean = sum(values) / n
    if n < 2:
        return mean, math.inf
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
