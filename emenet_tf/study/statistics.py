"""The statistics of the replicate study: a 95% t-interval over replicates and whether it clears a threshold."""

from __future__ import annotations

import math

import numpy as np

from emenet_tf.claims import passes

LEVEL = 0.95


def t_interval(values, level: float = LEVEL) -> tuple[float | None, float | None, float | None]:
    """(mean, lo, hi) of the t-interval mean +- t_{(1+level)/2, K-1} s / sqrt(K) (s: ddof 1).

    K = 1: (mean, None, None): one value has no spread. K = 0: (None, None, None).
    """
    from scipy import stats

    x = np.asarray([v for v in values if v is not None], np.float64)
    if x.size == 0:
        return None, None, None
    mean = float(x.mean())
    if x.size < 2:
        return mean, None, None
    half = float(stats.t.ppf(0.5 + level / 2.0, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def holds(ci95, threshold: float, direction: str) -> bool:
    """``below``: the whole interval < threshold; ``at_least``: the whole interval >= threshold."""
    lo, hi = ci95
    if lo is None or hi is None:
        return False
    return passes(hi if direction == "below" else lo, threshold, direction)


def summary(values, threshold: float, direction: str) -> dict:
    """{values, mean, ci95, threshold, direction, holds[, note]} of one claim's per-replicate values."""
    mean, lo, hi = t_interval(values)
    out = {
        "values": [None if v is None else float(v) for v in values],
        "mean": mean,
        "ci95": [lo, hi],
        "threshold": threshold,
        "direction": direction,
        "holds": holds((lo, hi), threshold, direction) and all(v is not None for v in values),
    }
    if any(v is None for v in values):
        out["note"] = "a replicate lacks this metric: the claim does not hold"
    elif len(values) < 2:
        out["note"] = "K = 1: a 95% interval needs at least 2 replicates, so the claim does not hold"
    return out
