"""The statistics of a study's summary and their cells: bootstrap means and intervals, words for Kendall τ.

Nothing here knows a method or an evaluator; :mod:`attnfaith.study.report` and the registrations
(:mod:`attnfaith.study.builtin`) use these.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "N_BOOT", "finite_values", "bootstrap_mean", "bootstrap_paired_difference", "tau_strength", "percent", "cell",
]

#: resamples of the bootstrap
N_BOOT = 2000


def finite_values(values: Iterable[Any]) -> np.ndarray:
    """The finite ``values`` as a float64 array, in order: None, NaN and ±inf left out."""
    arr = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return arr[np.isfinite(arr)]


def bootstrap_mean(values: Iterable[Any], seed: int = 0, n_boot: int = N_BOOT, level: float = 0.95) -> dict[str, Any]:
    """Mean of the finite ``values`` and its percentile bootstrap interval.

    ``n_boot`` resamples with replacement drawn from ``numpy.random.default_rng(seed)``; the interval is the
    ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of the resampled means. None/NaN values are left out.
    Returns ``{"mean", "lo", "hi", "n"}`` (None for an empty input; ``lo = hi = mean`` for one value).
    """
    x = finite_values(values)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "lo": mean, "hi": mean, "n": 1}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    means = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": mean, "lo": float(lo), "hi": float(hi), "n": n}


def bootstrap_paired_difference(a: Sequence[Any], b: Sequence[Any], seed: int = 0, n_boot: int = N_BOOT) -> dict:
    """Mean of ``a_i − b_i`` over the pairs where both are finite, with its bootstrap interval."""
    pairs = [(float(x) - float(y)) for x, y in zip(a, b)
             if x is not None and y is not None and math.isfinite(float(x)) and math.isfinite(float(y))]
    return bootstrap_mean(pairs, seed=seed, n_boot=n_boot)


def tau_strength(tau: float | None) -> str:
    """Words for a mean Kendall τ: none (|τ| < 0.1), weak (< 0.3), moderate (< 0.5), strong."""
    if tau is None:
        return "undefined"
    a = abs(tau)
    word = "no" if a < 0.1 else "weak" if a < 0.3 else "moderate" if a < 0.5 else "strong"
    return f"{word}{' negative' if tau < -0.1 else ''} agreement"


def percent(x: float | None) -> str:
    """``x`` as a whole percentage (``"n/a"`` for None)."""
    return "n/a" if x is None else f"{100 * x:.0f}%"


def cell(b: Mapping[str, Any] | None, pct: bool = False, digits: int = 2) -> str:
    """A :func:`bootstrap_mean` as ``"mean [lo, hi]"`` (percentages with ``pct``); ``"–"`` without a mean."""
    if not b or b.get("mean") is None:
        return "–"
    if pct:
        return f"{100 * b['mean']:.0f}% [{100 * b['lo']:.0f}, {100 * b['hi']:.0f}]"
    return f"{b['mean']:.{digits}f} [{b['lo']:.{digits}f}, {b['hi']:.{digits}f}]"
