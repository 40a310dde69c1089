"""Latency measurement: warm-up, then timed runs, reported as percentiles. Standalone module."""

from __future__ import annotations

import time


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def summarize(samples_ms: list[float]) -> dict:
    s = sorted(samples_ms)
    return {
        "runs": len(s),
        "p50_ms": percentile(s, 50),
        "p90_ms": percentile(s, 90),
        "p99_ms": percentile(s, 99),
        "mean_ms": sum(s) / len(s) if s else float("nan"),
        "min_ms": s[0] if s else float("nan"),
        "max_ms": s[-1] if s else float("nan"),
    }


def measure(fn, inputs: list, warmup: int = 5, runs: int = 50, max_seconds: float = 30.0) -> dict:
    """Call fn(inputs[i % len(inputs)]) `warmup` times untimed, then up to `runs` times timed.

    Stops early after max_seconds of timed runs (at least 3 runs), and says so in the result.
    """
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    samples = []
    start = time.perf_counter()
    for i in range(runs):
        t0 = time.perf_counter()
        fn(inputs[i % len(inputs)])
        samples.append((time.perf_counter() - t0) * 1000.0)
        if time.perf_counter() - start > max_seconds and len(samples) >= 3:
            break
    out = summarize(samples)
    out["warmup"] = warmup
    out["requested_runs"] = runs
    out["truncated"] = len(samples) < runs
    out["samples_ms"] = [round(v, 5) for v in samples]  # the distribution, for baseline comparisons
    return out
