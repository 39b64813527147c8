"""Timing and statistics: wall time of a call, latency percentiles, medians, ratios to a target."""

from __future__ import annotations

import statistics
import time


def timed(fn, *args, **kwargs):
    """(seconds, result) of one call."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def sample(fn, calls: list[dict], warmup: int = 3) -> list[float]:
    """Seconds of ``fn(**kw)`` for each ``kw`` of ``calls``, after ``warmup`` untimed calls of the first ones."""
    for kw in calls[:warmup]:
        fn(**kw)
    return [timed(fn, **kw)[0] for kw in calls]


def stats_ms(samples_s: list[float], *, mean: bool = False) -> dict:
    """n, p50, p99 (numpy's linear interpolation) and max in ms (and the mean when asked)."""
    import numpy as np

    if not samples_s:
        return {"n": 0}
    ms = np.array(samples_s) * 1000.0
    out = {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
    }
    if mean:
        out["mean_ms"] = round(float(ms.mean()), 3)
    return out


def rank_p99(ordered: list[float]) -> float:
    """The p99 of sorted samples as the sample at rank int(0.99 n) (no interpolation)."""
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def rank_stats_ms(samples_s: list[float], ndigits: int = 2) -> dict:
    """n, p50 (the median) and p99 (``rank_p99``) in ms."""
    s = sorted(x * 1000 for x in samples_s)
    return {"n": len(s), "p50_ms": round(statistics.median(s), ndigits), "p99_ms": round(rank_p99(s), ndigits)}


def median_ms(fn, runs: int, warmup: int = 1) -> dict:
    """``fn()`` ``runs`` times after ``warmup`` calls: median and max ms, n."""
    for _ in range(warmup):
        fn()
    samples = [timed(fn)[0] for _ in range(runs)]
    return {
        "median_ms": round(statistics.median(samples) * 1000, 1),
        "max_ms": round(max(samples) * 1000, 1),
        "n": runs,
    }


def samples_ms(fn, runs: int, warmup: int = 2) -> list[float]:
    """ms of ``fn()`` ``runs`` times after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    return [timed(fn)[0] * 1000 for _ in range(runs)]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.array(values), q)) if values else float("nan")


def target_ratio(value: float | None, target: float) -> float | None:
    """value / target, 2 decimals (None without a value)."""
    return round(value / target, 2) if value else None


def against(value: float | None, target: float, *, at_most: bool) -> dict:
    """value vs its target: ratio value/target, and whether it is met (at_most: value < target)."""
    if value is None:
        return {"ratio_to_target": None, "meets_target": False}
    ratio = value / target
    return {"ratio_to_target": round(ratio, 3), "meets_target": ratio < 1 if at_most else ratio >= 1}
