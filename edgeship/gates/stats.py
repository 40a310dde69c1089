"""Statistics behind the latency verdicts: a one-sided Mann-Whitney U test and bootstrap bounds.

Numpy only, seeded: the same samples always give the same verdict.
"""

from __future__ import annotations

import math

import numpy as np

BOOTSTRAP_RESAMPLES = 2000


def _rng() -> np.random.Generator:
    return np.random.default_rng(20261125)


def mann_whitney_greater(current, baseline) -> float:
    """One-sided p-value for "current is stochastically slower than baseline" (normal
    approximation with tie and continuity corrections; fine from about 8 samples a side)."""
    x = np.asarray(current, float)
    y = np.asarray(baseline, float)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return float("nan")
    both = np.concatenate([x, y])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(len(both))
    sorted_vals = both[order]
    i = 0
    ties = 0.0
    while i < len(both):  # average ranks over ties
        j = i
        while j + 1 < len(both) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2))


def median_shift_lower_bound(current, baseline, confidence: float) -> tuple[float, float]:
    """(median(current) - median(baseline), its one-sided lower bound at `confidence`), by bootstrap."""
    x = np.asarray(current, float)
    y = np.asarray(baseline, float)
    rng = _rng()
    bx = np.median(rng.choice(x, (BOOTSTRAP_RESAMPLES, len(x))), axis=1)
    by = np.median(rng.choice(y, (BOOTSTRAP_RESAMPLES, len(y))), axis=1)
    shift = float(np.median(x) - np.median(y))
    return shift, float(np.quantile(bx - by, 1 - confidence))


def quantile_bounds(samples, q: float, confidence: float) -> tuple[float, float, float]:
    """(estimate, lower, upper) of the q-th percentile; two one-sided bootstrap bounds at `confidence`."""
    x = np.asarray(samples, float)
    boots = np.percentile(_rng().choice(x, (BOOTSTRAP_RESAMPLES, len(x))), q, axis=1)
    return float(np.percentile(x, q)), float(np.quantile(boots, 1 - confidence)), float(np.quantile(boots, confidence))
