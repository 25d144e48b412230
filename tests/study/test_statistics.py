"""The study's statistics against SciPy called directly, exact enumerations and hand computations: bootstrap means
(BCa), paired differences (paired bootstrap, sign-flip permutation test), Holm's correction, rank intervals, the
comparison of methods, and the number formatting of the report."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from attnfaith.results import fmt_number
from attnfaith.study.statistics import (
    FEW, bootstrap_mean, cell, compare_methods, holm, pair_of, paired_difference, percent, rank_intervals,
    versus_clause,
)


def test_bootstrap_mean_is_scipys_bca_interval():
    rng = np.random.default_rng(1)
    x = rng.exponential(size=40)
    values = list(x) + [None, float("nan"), float("inf")]  # left out
    got = bootstrap_mean(values, seed=7, n_boot=999)
    ref = stats.bootstrap((x,), np.mean, n_resamples=999, method="BCa", rng=np.random.default_rng(7))
    assert got["n"] == 40 and got["mean"] == pytest.approx(x.mean())
    assert got["lo"] == pytest.approx(ref.confidence_interval.low, rel=1e-12)
    assert got["hi"] == pytest.approx(ref.confidence_interval.high, rel=1e-12)
    assert bootstrap_mean(values, seed=7, n_boot=999) == got  # the seed reproduces it
    assert bootstrap_mean([0.3] * 5) == {"mean": 0.3, "lo": 0.3, "hi": 0.3, "n": 5}  # BCa undefined: no spread


def test_paired_difference_interval_is_scipys_paired_bootstrap():
    rng = np.random.default_rng(2)
    a = rng.normal(size=30)
    b = a + rng.normal(0.3, 1.0, size=30)
    a_missing = list(a) + [None, 1.0]
    b_missing = list(b) + [0.5, None]  # the two extra pairs have a missing side: left out
    got = paired_difference(a_missing, b_missing, seed=3, n_boot=999, n_perm=999)
    ref = stats.bootstrap((a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis), paired=True, vectorized=True,
                          n_resamples=999, method="BCa", rng=np.random.default_rng(3))
    assert got["n"] == 30 and got["mean"] == pytest.approx((a - b).mean())
    assert got["lo"] == pytest.approx(ref.confidence_interval.low, rel=1e-12)
    assert got["hi"] == pytest.approx(ref.confidence_interval.high, rel=1e-12)


def test_paired_permutation_p_value_is_the_exact_sign_flip_test():
    # 8 pairs: every one of the 2**8 sign patterns is enumerated (exact test), by SciPy and by this loop
    a = np.array([0.9, 0.7, 0.8, 0.4, 0.65, 0.3, 0.75, 0.5])
    b = np.array([0.5, 0.6, 0.2, 0.45, 0.3, 0.1, 0.35, 0.5])  # last pair: difference 0
    d = a - b
    null = [abs(np.dot(signs, d)) for signs in itertools.product([-1, 1], repeat=d.size)]
    exact = np.mean(np.array(null) >= abs(d.sum()) - 1e-12)
    got = paired_difference(a, b, seed=0, n_perm=9999)
    assert got["p"] == pytest.approx(exact)
    # SciPy's paired test on the pairs themselves (values swapped within pairs) gives the same p-value
    ref = stats.permutation_test((a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis), vectorized=True,
                                 permutation_type="samples", n_resamples=9999)
    assert got["p"] == pytest.approx(ref.pvalue)
    assert paired_difference([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])["p"] == 1.0  # no difference at all
    assert paired_difference([1.0], [0.0]) == {"mean": 1.0, "lo": 1.0, "hi": 1.0, "n": 1, "p": None}


def test_holm_by_hand():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → running max 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.5, None, 0.9])
    assert out[1] is None and out[0] == pytest.approx(1.0) and out[2] == pytest.approx(1.0)
    assert holm([]) == []


def test_rank_intervals_of_clearly_separated_and_tied_methods():
    rng = np.random.default_rng(4)
    n = 60
    base = rng.normal(size=n)
    columns = {"low": list(base), "high": list(base + 5), "mid": list(base + 2.5)}
    ranks = rank_intervals(columns, "higher", seed=0, n_boot=500)
    assert ranks == {"high": {"rank": 1, "rank_lo": 1, "rank_hi": 1}, "mid": {"rank": 2, "rank_lo": 2, "rank_hi": 2},
                     "low": {"rank": 3, "rank_lo": 3, "rank_hi": 3}}
    twins = {"a": list(base), "b": list(base + rng.normal(0, 1e-3, n)), "c": list(base - 10)}
    tied = rank_intervals(twins, "lower", seed=0, n_boot=500)
    assert tied["c"] == {"rank": 1, "rank_lo": 1, "rank_hi": 1}
    assert {tied["a"]["rank_lo"], tied["a"]["rank_hi"]} == {2, 3} == {tied["b"]["rank_lo"], tied["b"]["rank_hi"]}
    with pytest.raises(ValueError, match="better"):
        rank_intervals(columns, "up")


def test_compare_methods_ranks_and_decides_with_holm():
    rng = np.random.default_rng(5)
    n = 50
    noise = rng.normal(0, 0.05, size=(3, n))
    good = 0.2 + noise[0]
    same = 0.2 + noise[1]
    bad = 0.6 + noise[2]
    columns = {"good": list(good), "same": list(same), "bad": [None] * 5 + list(bad[5:])}
    comp = compare_methods(columns, "lower", seed=1, n_boot=500, n_perm=999)
    assert [r["method"] for r in comp["ranking"]][-1] == "bad"
    assert comp["ranking"][-1]["n"] == 45
    pairs = {(p["a"], p["b"]): p for p in comp["pairs"]}
    assert set(pairs) == {("good", "same"), ("good", "bad"), ("same", "bad")}
    gb = pairs[("good", "bad")]
    assert gb["n"] == 45 and gb["mean"] == pytest.approx(np.mean(good[5:] - bad[5:]))
    assert gb["better"] == "good" and gb["p_holm"] <= 0.05
    assert pairs[("same", "bad")]["better"] == "same"
    assert pairs[("good", "same")]["better"] is None  # no real difference
    assert holm([p["p"] for p in comp["pairs"]]) == [p["p_holm"] for p in comp["pairs"]]
    flipped = pair_of(comp, "bad", "good")
    assert flipped["mean"] == pytest.approx(-gb["mean"]) and flipped["lo"] == pytest.approx(-gb["hi"])
    assert pair_of(comp, "good", "nope") is None


def test_verdict_words_are_softened_over_few_examples():
    pair = {"a": "x", "b": "random", "mean": -0.3, "lo": -0.4, "hi": -0.2, "n": 100, "p": 1e-4, "p_holm": 5e-4,
            "better": "x"}
    assert versus_clause(pair, "random").startswith("more faithful than random (paired difference -0.30 [-0.40, "
                                                   "-0.20], n = 100, Holm p < 0.001)")
    few = dict(pair, n=FEW - 1)
    assert versus_clause(few, "random").startswith("probably more faithful than random")
    assert f"only {FEW - 1} examples" in versus_clause(few, "random")
    unclear = dict(pair, better=None, p_holm=0.2, n=8)
    assert versus_clause(unclear, "random").startswith("not distinguishable from random")
    assert "too few examples to tell" in versus_clause(unclear, "random")
    assert "LESS faithful" in versus_clause(dict(pair, better="random", mean=0.3, lo=0.2, hi=0.4), "random")
    assert versus_clause(None, "random") == ""


def test_tiny_numbers_keep_two_significant_digits():
    assert fmt_number(4.2e-05) == "4.2e-05" and fmt_number(0.00042) == "0.00042" and fmt_number(-3e-8) == "-3.0e-08"
    assert fmt_number(0.0123) == "0.012" and fmt_number(0.0) == "0.000" and fmt_number(-0.0, 2) == "0.00"
    assert fmt_number(12) == "12" and fmt_number(None) == "–" and fmt_number(float("nan")) == "nan"
    assert cell({"mean": 4.3e-5, "lo": -1e-6, "hi": 1.2e-4, "n": 120}, digits=3) == "4.3e-05 [-1.0e-06, 0.00012]"
    assert cell({"mean": 0.25, "lo": 0.1, "hi": 0.4, "n": 12}, pct=True) == "25% [10, 40] (n=12)"
    assert cell({"mean": 0.004, "lo": 0.0, "hi": 0.012, "n": 120}, pct=True) == "0.40% [0, 1]"
    assert percent(0.004) == "0.40%" and percent(0.5) == "50%" and percent(None) == "n/a"
