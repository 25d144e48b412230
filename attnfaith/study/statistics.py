"""The statistics of a study's summary and their cells: bootstrap means and intervals, paired comparisons of
methods (bootstrap interval, permutation test, Holm's correction), rankings with intervals, words for Kendall τ.

Resampling is SciPy's (:func:`scipy.stats.bootstrap`, :func:`scipy.stats.permutation_test`), every call seeded
with ``numpy.random.default_rng(seed)``, so a summary is reproduced exactly by its seed. Nothing here knows a method
or an evaluator; :mod:`attnfaith.study.report` and the registrations (:mod:`attnfaith.study.builtin`) use these.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

from attnfaith.results import fmt_number

__all__ = [
    "N_BOOT", "N_PERM", "LEVEL", "ALPHA", "FEW", "finite_values", "finite_pairs", "bootstrap_mean",
    "paired_difference", "holm", "rank_intervals", "compare_methods", "pair_of", "few", "tau_strength", "percent",
    "cell",
]

#: resamples of the bootstrap
N_BOOT = 2000
#: resamples of the permutation test (exact when the ``n`` nonzero differences have ``2**n <= N_PERM``); its
#: smallest two-sided p-value, ``2 / (N_PERM + 1) = 0.001``, stays below ``ALPHA`` after Holm's correction of up to
#: 25 pairs (8 methods)
N_PERM = 1999
#: confidence level of every interval
LEVEL = 0.95
#: family-wise error rate of the paired comparisons (Holm)
ALPHA = 0.05
#: a statistic over fewer examples than this is shown with its ``n`` and its verdict softened
FEW = 30
#: the numbers one vectorised resampling call holds (SciPy's ``batch``: bounded memory, and faster than one call)
_CELLS = 50_000


def finite_values(values: Iterable[Any]) -> np.ndarray:
    """The finite ``values`` as a float64 array, in order: None, NaN and ±inf left out."""
    arr = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return arr[np.isfinite(arr)]


def _as_array(values: Iterable[Any]) -> np.ndarray:
    """``values`` as a float64 array with None, NaN and ±inf as NaN."""
    arr = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    arr[~np.isfinite(arr)] = np.nan
    return arr


def finite_pairs(a: Sequence[Any], b: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: the pairs ``(a_i, b_i)`` where both are finite, as two float64 arrays (``ValueError`` if the
    lengths differ)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    x, y = _as_array(a), _as_array(b)
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def _batch(n: int, n_resamples: int) -> int:
    return int(max(1, min(n_resamples, _CELLS // max(n, 1))))


def _sum(d: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.sum(d, axis=axis)


def _interval(x: np.ndarray, seed: int, n_boot: int, level: float) -> tuple[float, float]:
    """SciPy's BCa bootstrap interval of the mean of ``x`` (percentile where BCa is undefined, e.g. for a
    jackknife without spread), seeded with ``default_rng(seed)``."""
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DegenerateDataWarning, 0/0 in the acceleration: handled below
            res = stats.bootstrap((x,), np.mean, n_resamples=n_boot, confidence_level=level, method=method,
                                  vectorized=True, rng=np.random.default_rng(seed), batch=_batch(x.size, n_boot))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi
    return math.nan, math.nan


def bootstrap_mean(values: Iterable[Any], seed: int = 0, n_boot: int = N_BOOT, level: float = LEVEL) -> dict[str, Any]:
    """Mean of the finite ``values`` and its bootstrap interval.

    The interval is SciPy's BCa interval (:func:`scipy.stats.bootstrap`, ``method="BCa"``, ``n_boot`` resamples,
    ``rng=numpy.random.default_rng(seed)``) at ``level``; the percentile interval where BCa is undefined. None/NaN
    values are left out. Returns ``{"mean", "lo", "hi", "n"}`` (None for an empty input; ``lo = hi = mean`` for one
    value or for values that are all equal).
    """
    x = finite_values(values)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    mean = float(x.mean())
    if n == 1 or np.ptp(x) == 0:
        return {"mean": mean, "lo": mean, "hi": mean, "n": n}
    lo, hi = _interval(x, seed, n_boot, level)
    return {"mean": mean, "lo": lo, "hi": hi, "n": n}


def paired_difference(a: Sequence[Any], b: Sequence[Any], seed: int = 0, n_boot: int = N_BOOT,
                      n_perm: int = N_PERM, level: float = LEVEL) -> dict[str, Any]:
    """Mean of ``a_i − b_i`` over the pairs where both are finite, its paired bootstrap interval and a paired
    permutation test.

    * interval: the paired bootstrap, BCa, ``n_boot`` resamples, ``rng=default_rng(seed)``: whole pairs are
      resampled, which is :func:`scipy.stats.bootstrap` of the mean of ``d_i = a_i − b_i`` (the same resamples,
      jackknife and interval as ``bootstrap((a, b), mean(a − b), paired=True)``, three times faster);
    * ``p``: the paired permutation test: two-sided :func:`scipy.stats.permutation_test` with
      ``permutation_type="samples"`` on the one sample of the nonzero differences ``d_i = a_i − b_i`` (SciPy then
      flips the sign of each ``d_i`` at random, i.e. swaps the two values of a pair; a zero difference is the same
      under a swap, so leaving it out changes no null distribution), statistic ``Σ d_i`` (the mean difference
      times a constant), ``n_perm`` resamples (every one of the ``2**n`` sign patterns when ``2**n <= n_perm``),
      ``rng=default_rng(seed)``.

    Returns ``{"mean", "lo", "hi", "n", "p"}`` (None without a pair; ``lo = hi = mean`` and ``p = 1`` when every
    difference is equal to the others and 0; ``p`` None for a single pair).
    """
    x, y = finite_pairs(a, b)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0, "p": None}
    d = x - y
    mean = float(d.mean())
    if n == 1:
        return {"mean": mean, "lo": mean, "hi": mean, "n": 1, "p": None}
    if np.ptp(d) == 0:
        lo = hi = mean
    else:
        lo, hi = _interval(d, seed, n_boot, level)
    nonzero = d[d != 0]
    if nonzero.size < 2:  # every sign pattern gives the same |Σ d|
        p = 1.0
    else:
        res = stats.permutation_test((nonzero,), _sum, permutation_type="samples", vectorized=True,
                                     n_resamples=n_perm, alternative="two-sided", rng=np.random.default_rng(seed),
                                     batch=_batch(nonzero.size, n_perm))
        p = float(res.pvalue)
    return {"mean": mean, "lo": lo, "hi": hi, "n": n, "p": p}


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of ``pvalues`` (None left out of the family and kept as None).

    With the ``m`` p-values sorted, ``p_(1) ≤ … ≤ p_(m)``, the adjusted ``p̃_(i) = max_{j ≤ i} min(1, (m − j + 1)
    p_(j))``; rejecting where ``p̃ ≤ α`` keeps the family-wise error rate at ``α`` (Holm 1979).
    """
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = running
    return out


def _ranks(means: np.ndarray, better: str) -> np.ndarray:
    """Ranks (1 = best, ties share the smaller rank) along axis 0 of ``means``; a NaN mean ranks last."""
    key = -means if better == "higher" else means
    key = np.where(np.isnan(key), np.inf, key)
    return stats.rankdata(key, axis=0, method="min").astype(np.float64)


def rank_intervals(columns: Mapping[str, Sequence[Any]], better: str, seed: int = 0, n_boot: int = N_BOOT,
                   level: float = LEVEL) -> dict[str, dict[str, int]]:
    """Each method's rank by its mean (1 = best; ``better`` ``"higher"`` or ``"lower"``; ties share the smaller
    rank) and the ``level`` percentile bootstrap interval of that rank.

    ``columns`` maps a method to its per-example values (None where undefined; every column one value per
    example). Whole examples are resampled (:func:`scipy.stats.bootstrap`, ``paired=True``, ``method="percentile"``,
    ``rng=default_rng(seed)``); in each resample every method's mean is over its defined values (a method with none
    in a resample ranks last), and the methods are ranked. The interval's ends are rounded outwards to whole ranks.
    Returns ``{method: {"rank", "rank_lo", "rank_hi"}}`` for the methods with at least one value.
    """
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    names = [m for m, v in columns.items() if finite_values(v).size]
    if not names:
        return {}
    data = np.stack([_as_array(columns[m]) for m in names])
    data = data[:, np.isfinite(data).any(axis=0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of a resample without a value: ranked last
        point = _ranks(np.nanmean(data, axis=1), better)

        def statistic(*rows: np.ndarray, axis: int = -1) -> np.ndarray:
            return _ranks(np.stack([np.nanmean(r, axis=axis) for r in rows]), better)

        if len(names) == 1 or data.shape[1] < 2:
            lo = hi = point
        else:
            res = stats.bootstrap(tuple(data), statistic, n_resamples=n_boot, confidence_level=level,
                                  method="percentile", paired=True, vectorized=True, rng=np.random.default_rng(seed),
                                  batch=_batch(data.size, n_boot))
            lo, hi = np.floor(res.confidence_interval.low), np.ceil(res.confidence_interval.high)
    return {m: {"rank": int(point[i]), "rank_lo": int(min(lo[i], point[i])), "rank_hi": int(max(hi[i], point[i]))}
            for i, m in enumerate(names)}


def compare_methods(columns: Mapping[str, Sequence[Any]], better: str, seed: int = 0, n_boot: int = N_BOOT,
                    n_perm: int = N_PERM, level: float = LEVEL, alpha: float = ALPHA,
                    means: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Which method is better than which on one metric: a ranking with intervals and every paired comparison.

    ``columns``: method → per-example values (one per example, None where undefined), in the report's order.

    * ``ranking``: the methods with values, best first (by mean; ties in ``columns``' order): ``{"method", "mean",
      "lo", "hi", "n"}`` (:func:`bootstrap_mean`) and ``"rank", "rank_lo", "rank_hi"`` (:func:`rank_intervals`);
    * ``pairs``: for every two of them ``a`` before ``b`` in ``columns``' order, :func:`paired_difference` of ``a −
      b`` over the examples where both have a value, ``p_holm`` (:func:`holm` over all pairs of this metric, one
      family) and ``better``: the better method of the two where ``p_holm ≤ alpha``, else None.

    ``means``: the methods' :func:`bootstrap_mean` with the same ``seed``, ``n_boot`` and ``level`` where already
    computed (the summary's table), else computed here.
    """
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    names = [m for m, v in columns.items() if finite_values(v).size]
    means = {m: dict((means or {}).get(m) or bootstrap_mean(columns[m], seed=seed, n_boot=n_boot, level=level))
             for m in names}
    ranks = rank_intervals({m: columns[m] for m in names}, better, seed=seed, n_boot=n_boot, level=level)
    order = sorted(names, key=lambda m: (ranks[m]["rank"], names.index(m)))
    ranking = [{"method": m, **means[m], **ranks[m]} for m in order]
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pairs.append({"a": a, "b": b, **paired_difference(columns[a], columns[b], seed=seed, n_boot=n_boot,
                                                               n_perm=n_perm, level=level)})
    for pair, adjusted in zip(pairs, holm([p["p"] for p in pairs])):
        pair["p_holm"] = adjusted
        winner = None
        if adjusted is not None and adjusted <= alpha and pair["mean"] != 0:
            a_higher = pair["mean"] > 0
            winner = pair["a"] if a_higher == (better == "higher") else pair["b"]
        pair["better"] = winner
    return {"better": better, "alpha": alpha, "ranking": ranking, "pairs": pairs}


def pair_of(comparison: Mapping[str, Any] | None, a: str, b: str) -> dict[str, Any] | None:
    """The paired comparison of ``a`` with ``b`` in a :func:`compare_methods` result, oriented as ``a − b`` (the
    mean and interval negated and swapped when it is stored as ``b − a``); None if the result holds no such pair."""
    for pair in (comparison or {}).get("pairs", ()):
        if (pair["a"], pair["b"]) == (a, b):
            return dict(pair)
        if (pair["a"], pair["b"]) == (b, a):
            flip = dict(pair, a=a, b=b)
            for key, src in (("mean", "mean"), ("lo", "hi"), ("hi", "lo")):
                flip[key] = None if pair[src] is None else -pair[src]
            return flip
    return None


def few(n: int | None, threshold: int = FEW) -> bool:
    """True when a statistic over ``n`` examples rests on too few of them (``n < threshold``) for a firm
    verdict."""
    return n is not None and n < threshold


def p_text(p: float | None, name: str = "p") -> str:
    """``"p = 0.012"``, ``"p < 0.001"`` (``name`` in place of ``p``); ``"p n/a"`` for None."""
    if p is None:
        return f"{name} n/a"
    return f"{name} < 0.001" if p < 0.001 else f"{name} = {fmt_number(p, 3)}"


def versus_clause(pair: Mapping[str, Any] | None, other: str, digits: int = 2) -> str:
    """The words of a :func:`pair_of` comparison ``a − b`` (``b`` named ``other``): ``"more faithful than
    random (paired difference -0.49 [-0.52, -0.46], n = 78, Holm p < 0.001)"``, ``"LESS faithful than …"`` or
    ``"not distinguishable from …"``, by the pair's Holm-adjusted decision; over fewer than :data:`FEW` pairs the
    words are softened (``"probably more faithful than … (…; only 12 examples)"``, ``"… too few examples to
    tell"``). ``""`` without a pair."""
    if not pair or pair.get("mean") is None:
        return ""
    n = pair["n"]
    winner = pair.get("better")
    numbers = (f"paired difference {fmt_number(pair['mean'], digits, 'n/a')} "
               f"[{fmt_number(pair['lo'], digits, 'n/a')}, {fmt_number(pair['hi'], digits, 'n/a')}], n = {n}, "
               f"{p_text(pair.get('p_holm'), 'Holm p')}")
    if winner is None:
        words = f"not distinguishable from {other}"
        caveat = "; too few examples to tell" if few(n) else ""
    else:
        words = "more faithful than" if winner == pair["a"] else "LESS faithful than"
        words, caveat = (f"probably {words} {other}", f"; only {n} examples") if few(n) else (f"{words} {other}", "")
    return f"{words} ({numbers}{caveat})"


def tau_strength(tau: float | None) -> str:
    """Words for a mean Kendall τ: none (|τ| < 0.1), weak (< 0.3), moderate (< 0.5), strong."""
    if tau is None:
        return "undefined"
    a = abs(tau)
    word = "no" if a < 0.1 else "weak" if a < 0.3 else "moderate" if a < 0.5 else "strong"
    return f"{word}{' negative' if tau < -0.1 else ''} agreement"


def percent(x: float | None) -> str:
    """``x`` as a whole percentage (``"n/a"`` for None; one significant digit more where a nonzero share would
    read 0%)."""
    return "n/a" if x is None else f"{fmt_number(100 * x, 0)}%"


def cell(b: Mapping[str, Any] | None, pct: bool = False, digits: int = 2, few_below: int = FEW) -> str:
    """A :func:`bootstrap_mean` as ``"mean [lo, hi]"`` (percentages with ``pct``; numbers by
    :func:`attnfaith.results.fmt_number`), with ``" (n=…)"`` appended when it rests on fewer than ``few_below``
    examples; ``"–"`` without a mean."""
    if not b or b.get("mean") is None:
        return "–"
    scale, digits, unit = (100, 0, "%") if pct else (1, digits, "")
    lo, hi = (fmt_number(None if b.get(k) is None else scale * b[k], digits, "n/a") for k in ("lo", "hi"))
    text = f"{fmt_number(scale * b['mean'], digits)}{unit} [{lo}, {hi}]"
    return text + (f" (n={b['n']})" if few(b.get("n"), few_below) else "")
