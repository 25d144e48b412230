"""Tests for attnfaith.metrics against independent references (scipy / numpy / plain Python)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.special import softmax as np_softmax
from scipy.stats import entropy, kendalltau, norm

from attnfaith.metrics import (
    descending_order,
    js_from_logits,
    jsd,
    kendall_tau,
    kl_div,
    random_scores,
    topk_mask,
    tvd,
)
from attnfaith.metrics import kendall as kendall_mod

LN2 = math.log(2.0)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# ---------------------------------------------------------------------------
# reference implementations
# ---------------------------------------------------------------------------


def ref_kendall(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """scipy's asymptotic tau-b for one row of valid values."""
    n = len(x)
    if n < 2:
        return math.nan, math.nan
    if n == 2:
        # scipy raises ZeroDivisionError on the x0*y0/(9 v (n-2)) term (x0 = y0 = 0).
        # Hand value: tau = sign product, var = 2*9/18 = 1, z = +-1.
        if x[0] == x[1] or y[0] == y[1]:
            return math.nan, math.nan
        return float(np.sign(x[0] - x[1]) * np.sign(y[0] - y[1])), float(2 * norm.sf(1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = kendalltau(x, y, method="asymptotic")
    return float(res.statistic), float(res.pvalue)


def assert_close_nan(actual: np.ndarray, expected: np.ndarray, atol: float) -> None:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(actual[ok], expected[ok], rtol=0, atol=atol)


# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------


@st.composite
def kendall_batches(draw):
    B = draw(st.integers(1, 5))
    T = draw(st.integers(0, 30))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["ties", "heavy_ties", "continuous", "mixed"]))
    if kind == "continuous":
        a = rng.normal(size=(B, T))
        b = rng.normal(size=(B, T))
    elif kind == "heavy_ties":
        a = rng.integers(0, 2, size=(B, T)).astype(np.float64)
        b = rng.integers(0, 3, size=(B, T)).astype(np.float64)
    elif kind == "ties":
        k = draw(st.integers(1, 6))
        a = rng.integers(0, k, size=(B, T)).astype(np.float64)
        b = rng.integers(0, k + 1, size=(B, T)).astype(np.float64)
    else:
        a = rng.integers(-3, 4, size=(B, T)).astype(np.float64)
        b = a + rng.integers(-1, 2, size=(B, T))  # correlated, tied
    mask_kind = draw(st.sampled_from(["none", "random", "prefix"]))
    if mask_kind == "none":
        mask = None
    elif mask_kind == "random":
        mask = rng.random((B, T)) < rng.random((B, 1))
    else:
        lengths = rng.integers(0, T + 1, size=B)
        mask = np.arange(T)[None, :] < lengths[:, None]
    return a, b, mask


# ---------------------------------------------------------------------------
# kendall_tau
# ---------------------------------------------------------------------------


@SETTINGS
@given(kendall_batches())
def test_kendall_matches_scipy(batch):
    a, b, mask = batch
    B, T = a.shape
    full = np.ones((B, T), dtype=bool) if mask is None else mask
    tau, p = kendall_tau(
        torch.from_numpy(a),
        torch.from_numpy(b),
        None if mask is None else torch.from_numpy(mask),
    )
    assert tau.dtype == torch.float64 and p.dtype == torch.float64
    assert tau.shape == (B,) and p.shape == (B,)
    ref = [ref_kendall(a[i][full[i]], b[i][full[i]]) for i in range(B)]
    assert_close_nan(tau.numpy(), np.array([r[0] for r in ref]), 1e-6)
    assert_close_nan(p.numpy(), np.array([r[1] for r in ref]), 1e-6)


@SETTINGS
@given(kendall_batches())
def test_kendall_float32_and_int_inputs(batch):
    a, b, mask = batch
    m = None if mask is None else torch.from_numpy(mask)
    t64, p64 = kendall_tau(torch.from_numpy(a), torch.from_numpy(b), m)
    # integer-valued data: float32 and int64 inputs give identical results
    a_i = torch.from_numpy(np.round(a * 1000).astype(np.int64))
    b_i = torch.from_numpy(np.round(b * 1000).astype(np.int64))
    t_i, p_i = kendall_tau(a_i, b_i.to(torch.float32), m)
    t_r, p_r = kendall_tau(a_i.double(), b_i.double(), m)
    torch.testing.assert_close(t_i, t_r, equal_nan=True)
    torch.testing.assert_close(p_i, p_r, equal_nan=True)


def test_kendall_scipy_docstring_example():
    x1 = torch.tensor([12.0, 2, 1, 12, 2])
    x2 = torch.tensor([1.0, 4, 7, 1, 0])
    tau, p = kendall_tau(x1, x2)
    assert tau.dim() == 0 and p.dim() == 0
    ref = kendalltau(x1.numpy(), x2.numpy(), method="asymptotic")
    assert abs(float(tau) - ref.statistic) < 1e-12
    assert abs(float(p) - ref.pvalue) < 1e-12
    assert abs(float(tau) - (-0.47140452079103173)) < 1e-12


def test_kendall_degenerate_rows_are_nan():
    a = torch.tensor(
        [
            [1.0, 2.0, 3.0, 4.0],  # only 1 valid position
            [1.0, 2.0, 3.0, 4.0],  # 0 valid positions
            [5.0, 5.0, 5.0, 1.0],  # constant a over valid positions
            [1.0, 2.0, 3.0, 4.0],  # constant b over valid positions
            [1.0, 2.0, 3.0, 4.0],  # fine
        ]
    )
    b = torch.tensor(
        [
            [4.0, 3.0, 2.0, 1.0],
            [4.0, 3.0, 2.0, 1.0],
            [1.0, 2.0, 3.0, 4.0],
            [7.0, 7.0, 7.0, 9.0],
            [1.0, 3.0, 2.0, 4.0],
        ]
    )
    mask = torch.tensor(
        [
            [False, True, False, False],
            [False, False, False, False],
            [True, True, True, False],
            [True, True, True, False],
            [True, True, True, True],
        ]
    )
    tau, p = kendall_tau(a, b, mask)
    assert torch.isnan(tau[:4]).all() and torch.isnan(p[:4]).all()
    ref = kendalltau([1, 2, 3, 4], [1, 3, 2, 4], method="asymptotic")
    assert abs(float(tau[4]) - ref.statistic) < 1e-12
    assert abs(float(p[4]) - ref.pvalue) < 1e-12


def test_kendall_empty_and_nan_and_inf():
    tau, p = kendall_tau(torch.zeros(0, 5), torch.zeros(0, 5))
    assert tau.shape == (0,) and p.shape == (0,)
    tau, p = kendall_tau(torch.zeros(3, 0), torch.zeros(3, 0))
    assert tau.shape == (3,) and torch.isnan(tau).all() and torch.isnan(p).all()
    # NaN at a valid position propagates; at a masked position it is ignored.
    a = torch.tensor([[1.0, math.nan, 3.0, 4.0], [1.0, math.nan, 3.0, 4.0]])
    b = torch.tensor([[1.0, 2.0, 4.0, 3.0], [1.0, 2.0, 4.0, 3.0]])
    m = torch.tensor([[True, True, True, True], [True, False, True, True]])
    tau, p = kendall_tau(a, b, m)
    assert math.isnan(float(tau[0])) and math.isnan(float(p[0]))
    ref = kendalltau([1, 3, 4], [1, 4, 3], method="asymptotic")
    assert abs(float(tau[1]) - ref.statistic) < 1e-12
    # infinities are ordinary values
    a = torch.tensor([-math.inf, 0.0, 1.0, math.inf, math.inf])
    b = torch.tensor([0.0, 1.0, 1.0, 2.0, 5.0])
    ref = kendalltau(a.numpy(), b.numpy(), method="asymptotic")
    tau, p = kendall_tau(a, b)
    assert abs(float(tau) - ref.statistic) < 1e-12
    assert abs(float(p) - ref.pvalue) < 1e-12


def test_kendall_chunking_gives_same_result(monkeypatch):
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (13, 17), generator=g).double()
    b = torch.randint(0, 4, (13, 17), generator=g).double()
    m = torch.rand(13, 17, generator=g) < 0.8
    whole = kendall_tau(a, b, m)
    monkeypatch.setattr(kendall_mod, "_PAIR_BUDGET", 3 * 17 * 17)  # 3 rows per chunk
    chunked = kendall_tau(a, b, m)
    monkeypatch.setattr(kendall_mod, "_PAIR_BUDGET", 1)  # 1 row per chunk
    single = kendall_tau(a, b, m)
    for x, y, z in zip(whole, chunked, single):
        torch.testing.assert_close(x, y, equal_nan=True, rtol=0, atol=0)
        torch.testing.assert_close(x, z, equal_nan=True, rtol=0, atol=0)


def test_kendall_longer_rows_match_scipy():
    rng = np.random.default_rng(1)
    B, T = 4, 300
    a = rng.integers(0, 10, size=(B, T)).astype(np.float64)
    b = a + rng.normal(scale=3, size=(B, T)).round()
    mask = rng.random((B, T)) < 0.9
    tau, p = kendall_tau(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(mask))
    for i in range(B):
        ref = kendalltau(a[i][mask[i]], b[i][mask[i]], method="asymptotic")
        assert abs(float(tau[i]) - ref.statistic) < 1e-9
        assert abs(float(p[i]) - ref.pvalue) < 1e-9


def test_kendall_integer_mask_accepted():
    a = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    b = torch.tensor([[3.0, 2.0, 1.0, 9.0]])
    t_bool = kendall_tau(a, b, torch.tensor([[True, True, True, False]]))
    t_int = kendall_tau(a, b, torch.tensor([[1, 1, 1, 0]]))
    torch.testing.assert_close(t_bool, t_int)


def test_kendall_float64_count_fallback_matches_scipy(monkeypatch):
    # Rows with T * T > _F32_EXACT count in float64 instead of float32; force
    # that path on short rows and check it against scipy and the default path.
    rng = np.random.default_rng(5)
    for T in (1, 2, 3, 7, 16, 17, 64, 131):
        a = rng.integers(0, 5, size=(4, T)).astype(np.float64)
        b = rng.normal(size=(4, T)).round(1)
        mask = rng.random((4, T)) < 0.85
        mask[0] = True
        args = (torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(mask))
        default = kendall_tau(*args)
        monkeypatch.setattr(kendall_mod, "_F32_EXACT", 0)
        tau, p = kendall_tau(*args)
        monkeypatch.undo()
        ref = [ref_kendall(a[i][mask[i]], b[i][mask[i]]) for i in range(4)]
        assert_close_nan(tau.numpy(), np.array([r[0] for r in ref]), 1e-9)
        assert_close_nan(p.numpy(), np.array([r[1] for r in ref]), 1e-9)
        torch.testing.assert_close(tau, default[0], equal_nan=True, rtol=0, atol=0)
        torch.testing.assert_close(p, default[1], equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8, torch.bool])
def test_kendall_small_integer_and_bool_inputs_with_mask(dtype):
    rng = np.random.default_rng(6)
    B, T = 5, 23
    hi = 2 if dtype == torch.bool else 6
    a = rng.integers(0, hi, size=(B, T))
    b = rng.integers(0, hi, size=(B, T))
    mask = rng.random((B, T)) < 0.7
    tau, p = kendall_tau(
        torch.from_numpy(a).to(dtype), torch.from_numpy(b).to(dtype), torch.from_numpy(mask)
    )
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = [ref_kendall(a64[i][mask[i]], b64[i][mask[i]]) for i in range(B)]
    assert_close_nan(tau.numpy(), np.array([r[0] for r in ref]), 1e-9)
    assert_close_nan(p.numpy(), np.array([r[1] for r in ref]), 1e-9)


def test_kendall_nan_without_mask_and_signed_zero():
    nan = math.nan
    a = torch.tensor(
        [
            [1.0, 2.0, 3.0, 4.0, 5.0],
            [1.0, nan, 3.0, 4.0, 5.0],  # NaN in a
            [1.0, 2.0, 3.0, 4.0, 5.0],
            [1.0, 2.0, 3.0, 4.0, 5.0],
            [0.0, -0.0, 1.0, -0.0, 0.0],  # -0.0 == 0.0 (one tie group)
        ],
        dtype=torch.float64,
    )
    b = torch.tensor(
        [
            [1.0, 3.0, 2.0, 5.0, 4.0],
            [1.0, 3.0, 2.0, 5.0, 4.0],
            [-nan, 3.0, 2.0, 5.0, 4.0],  # NaN (sign bit set) in b
            [1.0, 3.0, 2.0, 5.0, nan],  # NaN in b
            [1.0, 2.0, 3.0, 0.0, 5.0],
        ],
        dtype=torch.float64,
    )
    tau, p = kendall_tau(a, b)
    assert torch.isnan(tau[1:4]).all() and torch.isnan(p[1:4]).all()
    for i in (0, 4):
        ref = kendalltau(a[i].numpy(), b[i].numpy(), method="asymptotic")
        assert abs(float(tau[i]) - ref.statistic) < 1e-12
        assert abs(float(p[i]) - ref.pvalue) < 1e-12


# ---------------------------------------------------------------------------
# divergences
# ---------------------------------------------------------------------------


@st.composite
def distributions(draw):
    """Pairs of probability arrays [*lead, K] with zeros, maybe broadcast."""
    lead = draw(st.lists(st.integers(1, 4), min_size=0, max_size=3))
    K = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)

    def one(shape):
        w = rng.exponential(size=shape)
        w = np.where(rng.random(shape) < draw(st.sampled_from([0.0, 0.3, 0.7])), 0.0, w)
        w[..., 0] += (w.sum(-1) == 0)  # never an all-zero row
        return w / w.sum(-1, keepdims=True)

    p = one((*lead, K))
    if lead and draw(st.booleans()):
        q = one((*lead[1:], K))  # broadcast over the first leading axis
    else:
        q = one((*lead, K))
    return p, q


def ref_jsd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    p, q = np.broadcast_arrays(p, q)
    with np.errstate(invalid="ignore"):
        js = jensenshannon(p, q, axis=-1) ** 2
    # scipy takes sqrt of a sum that can round to -1e-17 -> NaN; that is 0.
    return np.where(np.isnan(js), 0.0, js)


@SETTINGS
@given(distributions())
def test_tvd_matches_numpy(pq):
    p, q = pq
    got = tvd(torch.from_numpy(p), torch.from_numpy(q))
    ref = 0.5 * np.abs(p - q).sum(-1)
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-12)
    assert (got >= 0).all() and (got <= 1 + 1e-12).all()


@SETTINGS
@given(distributions())
def test_jsd_matches_scipy(pq):
    p, q = pq
    tp, tq = torch.from_numpy(p), torch.from_numpy(q)
    got = jsd(tp, tq)
    np.testing.assert_allclose(got.numpy(), ref_jsd(p, q), rtol=0, atol=1e-10)
    assert (got >= 0).all() and (got <= LN2).all()
    torch.testing.assert_close(got, jsd(tq, tp), rtol=0, atol=1e-12)  # symmetry
    assert (jsd(tp, tp) == 0).all() and (jsd(tq, tq) == 0).all()
    # float32 too
    got32 = jsd(tp.float(), tq.float())
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), ref_jsd(p, q), rtol=0, atol=1e-5)


@SETTINGS
@given(distributions())
def test_kl_matches_scipy_entropy(pq):
    p, q = pq
    p, q = np.broadcast_arrays(p, q)
    got = kl_div(torch.from_numpy(p), torch.from_numpy(q))
    ref = entropy(p, q, axis=-1)  # inf where q = 0 < p
    np.testing.assert_array_equal(np.isinf(got.numpy()), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got.numpy()[fin], ref[fin], rtol=1e-9, atol=1e-12)


@SETTINGS
@given(
    st.integers(1, 4),
    st.integers(2, 10),
    st.floats(0.1, 50.0),
    st.integers(0, 2**31 - 1),
)
def test_js_from_logits_matches_softmax_reference(B, K, scale, seed):
    rng = np.random.default_rng(seed)
    lp = rng.normal(scale=scale, size=(B, K))
    lq = rng.normal(scale=scale, size=(B, K))
    got = js_from_logits(torch.from_numpy(lp), torch.from_numpy(lq))
    ref = ref_jsd(np_softmax(lp, axis=-1), np_softmax(lq, axis=-1))
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-10)
    via_probs = jsd(torch.softmax(torch.from_numpy(lp), -1), torch.softmax(torch.from_numpy(lq), -1))
    torch.testing.assert_close(got, via_probs, rtol=0, atol=1e-10)


def test_divergence_exact_values():
    a = torch.tensor([1.0, 0.0, 0.0])
    b = torch.tensor([0.0, 1.0, 0.0])
    assert abs(float(jsd(a, b)) - LN2) < 1e-7
    assert float(jsd(a, a)) == 0.0
    assert float(tvd(a, b)) == 1.0
    assert float(kl_div(a, a)) == 0.0
    assert math.isinf(float(kl_div(a, b)))
    u = torch.full((4,), 0.25, dtype=torch.float64)
    assert float(jsd(u, u)) == 0.0
    # large logits: stable, disjoint -> ln 2
    out = js_from_logits(torch.tensor([1000.0, 0.0]), torch.tensor([0.0, 1000.0]))
    assert abs(float(out) - LN2) < 1e-6
    assert float(js_from_logits(torch.tensor([3.0, 1.0]), torch.tensor([3.0, 1.0]))) == 0.0


def test_divergence_dim_and_broadcast():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(3, 1, 5, generator=g, dtype=torch.float64), -1)
    q = torch.softmax(torch.randn(4, 5, generator=g, dtype=torch.float64), -1)
    for fn in (tvd, jsd, kl_div):
        out = fn(p, q)
        assert out.shape == (3, 4)
        pb, qb = torch.broadcast_tensors(p, q)
        out_t = fn(pb.movedim(-1, 0), qb.movedim(-1, 0), dim=0)
        torch.testing.assert_close(out_t, out)
    out = js_from_logits(torch.randn(3, 1, 5, generator=g), torch.randn(4, 5, generator=g))
    assert out.shape == (3, 4)


def test_divergence_gradients_finite_at_zeros():
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64, requires_grad=True)
    jsd(p, q).backward()
    assert torch.isfinite(p.grad).all() and torch.isfinite(q.grad).all()
    lp = torch.tensor([0.0, -math.inf, 1.0], requires_grad=True)
    lq = torch.tensor([2.0, -math.inf, -math.inf], requires_grad=True)
    out = js_from_logits(lp, lq)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(lp.grad).all() and torch.isfinite(lq.grad).all()


# ---------------------------------------------------------------------------
# ranking
# ---------------------------------------------------------------------------


@st.composite
def scored_batches(draw):
    B = draw(st.integers(1, 5))
    T = draw(st.integers(0, 25))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["ties", "continuous", "specials"]))
    if kind == "ties":
        s = rng.integers(-2, 3, size=(B, T)).astype(np.float64)
    elif kind == "continuous":
        s = rng.normal(size=(B, T))
    else:
        s = rng.choice([-math.inf, math.inf, 0.0, -0.0, 1.0, -1.0], size=(B, T))
    mask = None if draw(st.booleans()) else rng.random((B, T)) < 0.7
    if mask is not None and T:
        s = np.where(mask, s, rng.choice([math.nan, 7.0, -math.inf], size=(B, T)))
    return s, mask


def ref_order(s_row, m_row):
    T = len(s_row)
    valid = [i for i in range(T) if m_row[i]]
    invalid = [i for i in range(T) if not m_row[i]]
    return sorted(valid, key=lambda i: (-s_row[i], i)) + invalid


@SETTINGS
@given(scored_batches())
def test_descending_order_matches_python_sorted(batch):
    s, mask = batch
    B, T = s.shape
    full = np.ones((B, T), dtype=bool) if mask is None else mask
    order, n_valid = descending_order(
        torch.from_numpy(s), None if mask is None else torch.from_numpy(mask)
    )
    assert order.dtype == torch.long and order.shape == (B, T)
    assert n_valid.tolist() == full.sum(-1).tolist()
    for i in range(B):
        s_row = [float(v) for v in s[i]]
        assert order[i].tolist() == ref_order(s_row, full[i].tolist())


@SETTINGS
@given(scored_batches(), st.integers(0, 30), st.booleans())
def test_topk_mask_matches_reference(batch, k, per_row):
    s, mask = batch
    B, T = s.shape
    full = np.ones((B, T), dtype=bool) if mask is None else mask
    rng = np.random.default_rng(k)
    ks = rng.integers(0, T + 2, size=B) if per_row else np.full(B, k)
    kk = torch.from_numpy(ks) if per_row else k
    got = topk_mask(torch.from_numpy(s), kk, None if mask is None else torch.from_numpy(mask))
    assert got.dtype == torch.bool and got.shape == (B, T)
    for i in range(B):
        ref = np.zeros(T, dtype=bool)
        ref[ref_order([float(v) for v in s[i]], full[i].tolist())[: min(ks[i], full[i].sum())]] = True
        assert got[i].tolist() == ref.tolist()


def test_descending_order_1d_and_integer_scores():
    order, n = descending_order(torch.tensor([1, 3, 3, 2]))
    assert order.tolist() == [1, 2, 3, 0] and n.dim() == 0 and int(n) == 4
    order, n = descending_order(torch.tensor([0.5, -math.inf, 0.2]), torch.tensor([1, 1, 0]))
    assert order.tolist() == [0, 1, 2] and int(n) == 2


def test_descending_order_nan_raises_only_at_valid_positions():
    s = torch.tensor([[1.0, math.nan, 0.0]])
    with pytest.raises(ValueError, match="scores"):
        descending_order(s)
    order, _ = descending_order(s, torch.tensor([[True, False, True]]))
    assert order.tolist() == [[0, 2, 1]]


def test_random_scores():
    mask = torch.tensor([[True, True, False, True], [False, True, True, False]])
    r1 = random_scores(mask, torch.Generator().manual_seed(3))
    r2 = random_scores(mask, torch.Generator().manual_seed(3))
    r3 = random_scores(mask, torch.Generator().manual_seed(4))
    assert r1.shape == mask.shape and r1.dtype == torch.float32
    assert torch.equal(r1, r2) and not torch.equal(r1, r3)
    assert (r1[~mask] == 0).all()
    assert ((r1[mask] >= 0) & (r1[mask] < 1)).all()
    r64 = random_scores(torch.ones(2000, dtype=torch.bool), torch.Generator().manual_seed(0), dtype=torch.float64)
    assert r64.dtype == torch.float64 and abs(float(r64.mean()) - 0.5) < 0.05
    # the induced ranking is a permutation of the valid positions
    order, n = descending_order(r1, mask)
    for i in range(2):
        assert sorted(order[i, : int(n[i])].tolist()) == mask[i].nonzero().flatten().tolist()


# ---------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------

F = torch.zeros(2, 3)


@pytest.mark.parametrize(
    "call, exc, name",
    [
        (lambda: kendall_tau(F, torch.zeros(2, 4)), ValueError, "`b`"),
        (lambda: kendall_tau(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1)), ValueError, "`a`"),
        (lambda: kendall_tau(F.numpy(), F), TypeError, "`a`"),
        (lambda: kendall_tau(F, [[0, 0, 0]]), TypeError, "`b`"),
        (lambda: kendall_tau(F.to(torch.complex64), F), TypeError, "`a`"),
        (lambda: kendall_tau(F, F, torch.ones(2, 4, dtype=torch.bool)), ValueError, "`mask`"),
        (lambda: kendall_tau(F, F, torch.ones(2, 3)), TypeError, "`mask`"),
        (lambda: kendall_tau(F, F, torch.full((2, 3), 2)), ValueError, "`mask`"),
        (lambda: tvd(torch.zeros(3, dtype=torch.long), torch.zeros(3)), TypeError, "`p`"),
        (lambda: jsd(torch.zeros(3), torch.zeros(3, dtype=torch.long)), TypeError, "`q`"),
        (lambda: jsd(torch.zeros(3), torch.zeros(4)), ValueError, "`p`"),
        (lambda: kl_div(torch.zeros(2, 3), torch.zeros(4, 3)), ValueError, "`q`"),
        (lambda: kl_div(np.zeros(3), torch.zeros(3)), TypeError, "`p`"),
        (lambda: js_from_logits(torch.zeros(3), torch.zeros(3, dtype=torch.int32)), TypeError, "`logits_q`"),
        (lambda: descending_order(torch.zeros(2, 3, 4)), ValueError, "`scores`"),
        (lambda: descending_order([1.0, 2.0]), TypeError, "`scores`"),
        (lambda: descending_order(F, torch.ones(3, 2, dtype=torch.bool)), ValueError, "`mask`"),
        (lambda: descending_order(F, torch.ones(2, 3) * 0.5), TypeError, "`mask`"),
        (lambda: topk_mask(F, -1), ValueError, "`k`"),
        (lambda: topk_mask(F, 1.5), TypeError, "`k`"),
        (lambda: topk_mask(F, torch.tensor([1, 2, 3])), ValueError, "`k`"),
        (lambda: random_scores(torch.ones(2, 3)), TypeError, "`mask`"),
        (lambda: random_scores(torch.ones(2, 3, dtype=torch.bool), generator=3), TypeError, "`generator`"),
    ],
)
def test_bad_input_raises_with_argument_name(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


# ------------------------------------------------------------------------------------------------ max-attention bins
def test_bin_summary_by_hand():
    from attnfaith.metrics import MAX_ATTENTION_BINS, bin_summary

    values = torch.tensor([1.0, 2.0, 3.0, float("nan"), 5.0, 7.0, 4.0])
    max_att = torch.tensor([0.1, 0.2, 0.5, 0.6, 1.0, 0.75, float("nan")])
    s = bin_summary(values, max_att, "tvd")
    assert MAX_ATTENTION_BINS == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert list(s) == ["[0.00, 0.25)", "[0.25, 0.50)", "[0.50, 0.75)", "[0.75, 1.00]", "all"]
    assert [s[k]["n"] for k in s] == [2, 0, 1, 2, 6]  # NaN values left out; NaN max attention: "all" only
    assert s["[0.00, 0.25)"]["tvd_mean"] == 1.5 and s["[0.00, 0.25)"]["tvd_median"] == 1.5
    assert math.isnan(s["[0.25, 0.50)"]["tvd_mean"]) and math.isnan(s["[0.25, 0.50)"]["tvd_median"])
    assert s["[0.50, 0.75)"]["tvd_median"] == 3.0  # 0.6's value is NaN
    assert s["[0.75, 1.00]"]["tvd_mean"] == 6.0  # 0.75 and the closed right edge 1.0
    assert s["all"]["tvd_mean"] == pytest.approx((1 + 2 + 3 + 5 + 7 + 4) / 6)
    assert s["all"]["tvd_median"] == pytest.approx(3.5)  # numpy's median: mean of the two middle values
    with pytest.raises(ValueError, match="`max_attention`"):
        bin_summary(values, max_att[:3], "tvd")
    with pytest.raises(TypeError, match="`values`"):
        bin_summary([1.0], max_att, "tvd")


def test_max_over_items_by_hand():
    from attnfaith.metrics import max_over_items

    scores = torch.tensor([[0.5, 0.9, 0.1], [0.2, 0.3, 0.4], [0.7, 0.1, 0.2]])
    items = torch.tensor([[True, False, True], [False, True, True], [False, False, False]])
    torch.testing.assert_close(max_over_items(scores, items), torch.tensor([0.5, 0.4, 0.0]))
    torch.testing.assert_close(max_over_items(scores), torch.tensor([0.9, 0.4, 0.7]))
    with pytest.raises(ValueError, match="`items`"):
        max_over_items(scores, items[:, :2])
    with pytest.raises(TypeError, match="`items`"):
        max_over_items(scores, items.long())
