"""The ERASER-style metric functions (attnfaith.metrics.eraser) against hand computations, brute force over every
order, and hypothesis invariants on a planted-signal model."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnfaith.metrics import (
    ERASER_FRACTIONS, bin_aopc, curve_aopc, exact_aopc_bounds, log_odds, minmax_normalize, normalized_aopc,
    normalized_comprehensiveness, normalized_sufficiency, probability_drop, top_fraction_sizes,
)


@given(st.lists(st.integers(0, 400), min_size=1, max_size=20),
       st.lists(st.sampled_from([0.01, 0.05, 0.1, 0.2, 0.29, 0.3, 0.5, 0.7, 1.0]), min_size=1, max_size=5))
def test_bin_sizes_are_exact_ceilings_and_floors(ns, fracs):
    n = torch.tensor(ns)
    up, down = top_fraction_sizes(n, fracs), top_fraction_sizes(n, fracs, rounding="floor")
    for b, nb in enumerate(ns):
        for j, f in enumerate(fracs):
            assert int(up[b, j]) == math.ceil(Fraction(str(f)) * nb)
            assert int(down[b, j]) == math.floor(Fraction(str(f)) * nb)


def test_bin_sizes_bad_input():
    with pytest.raises(ValueError, match="fractions"):
        top_fraction_sizes(torch.tensor([3]), (0.0, 0.5))
    with pytest.raises(ValueError, match="rounding"):
        top_fraction_sizes(torch.tensor([3]), ERASER_FRACTIONS, rounding="round")
    with pytest.raises(TypeError, match="n_items"):
        top_fraction_sizes(torch.tensor([3.0]))


def test_drops_log_odds_and_aopc_by_hand():
    p0 = torch.tensor([0.8, 0.5])
    pk = torch.tensor([[0.6, 0.2], [0.5, float("nan")]])
    torch.testing.assert_close(probability_drop(p0, pk), torch.tensor([[0.2, 0.6], [0.0, float("nan")]]),
                               equal_nan=True)
    torch.testing.assert_close(bin_aopc(probability_drop(p0, pk)), torch.tensor([0.4, 0.0]))
    torch.testing.assert_close(log_odds(p0, pk)[0], torch.tensor([math.log(0.6 / 0.8), math.log(0.2 / 0.8)]))
    assert torch.isfinite(log_odds(torch.tensor([0.5]), torch.tensor([0.0]))).all()


def test_minmax_and_carton_normalisation_by_hand():
    s = torch.tensor([[0.0, 2.0, -1.0, 5.0], [3.0, 3.0, 3.0, 9.0]])
    items = torch.tensor([[False, True, True, True], [True, True, True, False]])
    torch.testing.assert_close(minmax_normalize(s, items), torch.tensor([[0.0, 0.5, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]]))
    p0, pv, pe = torch.tensor([0.9]), torch.tensor([0.7]), torch.tensor([0.4])
    s0 = 1 - 0.5 - 1e-4
    torch.testing.assert_close(normalized_sufficiency(p0, pv, pe), torch.tensor([((1 - 0.2) - s0) / (1 - s0)]))
    torch.testing.assert_close(normalized_comprehensiveness(p0, pv, pe), torch.tensor([0.2 / (1 - s0)]))
    # the empty input keeps the prediction: the authors' 1e-4 denominator, clipped to 1
    assert float(normalized_comprehensiveness(p0, pv, torch.tensor([0.95]))) == 1.0


def test_curve_aopc_by_hand():
    drops = torch.tensor([[0.1, 0.2, 0.3, 9.0], [0.5, 7.0, 7.0, 7.0]])
    torch.testing.assert_close(curve_aopc(drops, torch.tensor([3, 1])), torch.tensor([0.2, 0.5]))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 7), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_exact_bounds_equal_brute_force_over_every_order(n, B, seed):
    g = torch.Generator().manual_seed(seed)
    drops = torch.rand(B, 1 << n, generator=g, dtype=torch.float64) * 2 - 0.5
    lo, hi = exact_aopc_bounds(drops)
    for b in range(B):
        totals = []
        for order in itertools.permutations(range(n)):
            mask, total = 0, 0.0
            for i in order:
                mask |= 1 << i
                total += float(drops[b, mask])
            totals.append(total / n)
        assert math.isclose(float(lo[b]), min(totals), abs_tol=1e-12)
        assert math.isclose(float(hi[b]), max(totals), abs_tol=1e-12)


def test_normalized_aopc_edges():
    out = normalized_aopc(torch.tensor([0.2, 0.5, 0.3]), torch.tensor([0.0, 0.5, 0.1]), torch.tensor([0.4, 0.5, 0.3]))
    torch.testing.assert_close(out[[0, 2]], torch.tensor([0.5, 1.0]))
    assert math.isnan(float(out[1]))


# ---------------------------------------------------------------------------------------------------------------
# invariants of the definitions on a planted-signal model
# ---------------------------------------------------------------------------------------------------------------
# the model: p(ŷ | kept items) = sigmoid(Σ w_i over the kept items); the weights are positive, so the oracle ranking
# (descending w) removes the most evidence first


def _planted_prob(w: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid((w * kept).sum(-1) - 1.0)


def _curves(w: torch.Tensor, fractions=ERASER_FRACTIONS):
    n = torch.tensor([w.numel()])
    order = torch.argsort(w, descending=True, stable=True)
    p0 = _planted_prob(w, torch.ones_like(w))
    comp, suff = [], []
    for k in top_fraction_sizes(n, fractions)[0].tolist():
        top = torch.zeros_like(w)
        top[order[:k]] = 1.0
        comp.append(_planted_prob(w, 1 - top))
        suff.append(_planted_prob(w, top))
    p0v = p0.reshape(1)
    return (probability_drop(p0v, torch.stack(comp)[None])[0], probability_drop(p0v, torch.stack(suff)[None])[0], p0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 3.0), min_size=1, max_size=60))
def test_empty_and_full_sets_and_monotone_oracle(weights):
    w = torch.tensor(weights, dtype=torch.float64)
    n = w.numel()
    p0 = _planted_prob(w, torch.ones_like(w))
    # comprehensiveness of the empty set is 0; sufficiency of the full set is 0
    assert float(probability_drop(p0.reshape(1), _planted_prob(w, torch.ones_like(w)).reshape(1, 1))) == 0.0
    comp, suff, _ = _curves(w, fractions=(1.0,))
    assert float(suff[0]) == 0.0
    # the empty set: a bin of 0 items removes nothing
    assert int(top_fraction_sizes(torch.tensor([n]), (0.01,), rounding="floor")[0, 0]) == (n >= 100)
    # monotone in k for the oracle ranking: comprehensiveness rises, sufficiency falls
    comp, suff, _ = _curves(w)
    assert (comp[1:] - comp[:-1] >= -1e-12).all()
    assert (suff[1:] - suff[:-1] <= 1e-12).all()
