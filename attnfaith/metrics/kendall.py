"""Batched, masked Kendall tau-b with the asymptotic (normal) p-value.

Jain & Wallace (2019, "Attention is not Explanation") correlate attention with
gradient / leave-one-out importance per instance over all real tokens using
``scipy.stats.kendalltau`` (tau-b).  :func:`kendall_tau` computes the same
statistic for a whole batch at once, on any device, and reproduces
``scipy.stats.kendalltau(x, y, method="asymptotic")`` (``variant="b"``,
``alternative="two-sided"``) row by row, including scipy's tie-corrected
variance of the normal approximation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .validation import as_bool_mask, require_real, require_rows, require_tensor

__all__ = ["kendall_tau"]

# Upper bound on the work entries (~ B_chunk * 2 T**1.5, see ``_row_cost``)
# materialised at once; rows are processed in chunks of at most this much work
# (at least one row).  Every count is an exact integer, so the chunking never
# changes a result.
_PAIR_BUDGET = 1 << 24

# The inversion count runs in float32 (exact for integers below 2**24) while
# every partial count fits, i.e. for rows with T * T <= _F32_EXACT (T <= 4096);
# longer rows use float64 (exact below 2**53).
_F32_EXACT = 1 << 24


def _blocks(T: int) -> tuple[int, int]:
    """``(s, nb)``: block length ``s ~ 2 sqrt(T)`` and block count ``nb = ceil(T / s)``."""
    s = max(1, min(T, 2 * math.isqrt(T)))
    return s, -(-T // s)


def _row_cost(T: int) -> int:
    """Entries materialised per row by :func:`_chunk_stats` (for chunking)."""
    s, nb = _blocks(T)
    return nb * s * s + 2 * nb * T + 16 * T + 1


def _inversions(x: Tensor, T: int) -> Tensor:
    """``int64 [R]``: ``sum_{i<j} [x[r, i] > x[r, j]]``, ``x [R, T]`` integer-valued in ``[0, T)``.

    Two levels with ``nb`` blocks of ``s ~ 2 sqrt(T)`` positions: O(T**1.5) per
    row and no comparison matrix over all pairs.

    * Pairs inside a block are compared directly, ``clamp(x_i - x_j, 0, 1)``
      summed over ``i < j``, with the rows on the innermost (contiguous) axis so
      that the elementwise ops vectorise across rows.
    * Pairs across blocks: with ``H[k, v]`` the number of positions of block
      ``k`` holding value ``v`` and ``F[k, v]`` the number of positions in
      blocks ``<= k`` holding a value ``<= v`` (``H`` cumulated over blocks and
      values), the pairs ``i`` in an earlier block than ``j`` with
      ``x_i <= x_j`` number ``sum_{k >= 1} sum_v H[k, v] F[k-1, v]``; the other
      earlier-block pairs are inversions.
    """
    R = x.shape[0]
    dev = x.device
    dt = torch.float32 if T * T <= _F32_EXACT else torch.float64
    s, nb = _blocks(T)
    P = nb * s
    xt = torch.empty((P, R), dtype=dt, device=dev)
    xt[:T].copy_(x.t())
    xt[T:].fill_(T - 1)  # padding with the largest value has no inversions
    xb = xt.view(nb, s, R)
    i = torch.arange(s, device=dev)
    before = (i.unsqueeze(-1) < i).to(dt).view(1, 1, s * s)  # [i < j]
    gt = (xb.unsqueeze(2) - xb.unsqueeze(1)).clamp_(0, 1).view(nb, s * s, R)
    inv = torch.matmul(before, gt).sum((0, 1)).to(torch.int64)
    del xt, xb, gt
    if nb == 1:
        return inv
    q = torch.arange(T, device=dev)
    H = torch.zeros((R, nb * T), dtype=dt, device=dev)
    one = torch.ones((), dtype=dt, device=dev).expand(R, T)
    H.scatter_add_(1, x.to(torch.int64) + (q // s) * T, one)
    F = H.view(R, nb, T)[:, :-1].cumsum(1).cumsum_(-1).view(R, (nb - 1) * T, 1)
    le = torch.bmm(H[:, T:].unsqueeze(1), F).view(R)
    # Position q (block q // s) has s * (q // s) earlier-block positions in all.
    earlier = s * sum(k * min(s, T - k * s) for k in range(nb))
    return inv + (earlier - le.to(torch.int64))


def _sort_key(x: Tensor, m: Tensor | None) -> Tensor:
    """Order-preserving sort key of ``x`` (ties kept); masked-out positions become NaN.

    NaN sorts after every number (``torch.sort``) and is unequal to itself, so
    masked-out positions form a suffix of every sorted row and no tie group.
    Integer inputs are made floating only when a mask needs the NaN: exactly
    (``float64``) up to 32 bits, via dense ranks for 64-bit integers.
    """
    if x.is_floating_point() and x.device.type != "cpu":
        # Radix sorts (CUDA) order -0.0 before +0.0; both are the same value.
        x = x + 0.0
    if m is None:
        return x
    if not x.is_floating_point():
        if x.element_size() <= 4:
            x = x.to(torch.float64)
        else:
            sx, ix = torch.sort(x, dim=-1)
            dense = torch.zeros(sx.shape, dtype=torch.float64, device=x.device)
            torch.ne(sx[:, 1:], sx[:, :-1], out=dense[:, 1:])
            x = torch.empty_like(dense).scatter_(1, ix, dense.cumsum_(-1))
    return torch.where(m, x, torch.full((), math.nan, dtype=x.dtype, device=x.device))


def _chunk_stats(a: Tensor, b: Tensor, m: Tensor | None) -> tuple[Tensor, ...]:
    """Integer pair statistics of one chunk of rows (``int64 [b]``) and NaN flags.

    Returns ``(n, con_minus_dis, xtie, ytie, x0, x1, y0, y1, has_nan)`` with
    scipy's meaning (``has_nan``: bool, a NaN at a valid position):

    * ``con_minus_dis`` = sum over valid pairs ``i < j`` of
      ``sign(a_i - a_j) * sign(b_i - b_j)`` (concordant minus discordant);
    * ``xtie`` = number of valid pairs tied in ``a`` (``sum_g c_g (c_g-1)/2`` over
      tie groups ``g`` of size ``c_g``), ``ytie`` likewise for ``b``;
    * ``x0 = sum_g c_g (c_g-1)(c_g-2)``, ``x1 = sum_g c_g (c_g-1)(2 c_g+5)``
      (and ``y0``, ``y1`` for ``b``).

    Knight's (1966) method, as in scipy: sort by ``b``, then stably by ``a``,
    which orders the positions lexicographically by ``(a, b)``; then
    ``con_minus_dis = tot - xtie - ytie + ntie - 2 dis`` with ``ntie`` the pairs
    tied in both and ``dis`` the inversions of the ``b`` ranks in that order.
    Tie groups are runs of equal sorted values: with ``t`` the 0-based place of
    a position in its run, ``sum_g c(c-1)/2 = sum t`` and
    ``sum_g c(c-1)(c-2) = 3 sum t(t-1)``; ``x1 = 2 x0 + 18 xtie``.
    """
    R, T = a.shape
    dev = a.device
    masked = m is not None
    n = m.sum(-1) if masked else torch.full((R,), T, dtype=torch.int64, device=dev)
    if T == 0:
        zero = torch.zeros(R, dtype=torch.int64, device=dev)
        return (n,) + (zero,) * 7 + (zero.bool(),)
    sb, ib = torch.sort(_sort_key(b, m), dim=-1)
    sa, ia = torch.sort(_sort_key(a, m).gather(1, ib), dim=-1, stable=True)
    # A NaN at a valid position (scipy propagates it).  The T - n masked-out
    # positions are NaN keys too; without a mask, NaNs sort to an end of the row
    # (the last place; CUDA's radix sort puts sign-bit NaNs first).
    has_nan = torch.zeros(R, dtype=torch.bool, device=dev)
    for sx in (sa, sb):
        if sx.is_floating_point():
            if masked:
                has_nan |= torch.isnan(sx).sum(-1) > T - n
            else:
                has_nan |= torch.isnan(sx[:, 0]) | torch.isnan(sx[:, -1])
    del sx
    bl = sb.gather(1, ia)  # b in (a, b) order
    # Run starts: [b-order runs of b, (a,b)-order runs of a, runs of (a, b)], in
    # a float type that holds every sum below exactly (sum t^2 <= T^3 / 3).
    rt = torch.float32 if T <= 256 else torch.float64
    new = torch.zeros((R, 3, T), dtype=torch.bool, device=dev)
    torch.ne(sb[:, 1:], sb[:, :-1], out=new[:, 0, 1:])
    torch.ne(sa[:, 1:], sa[:, :-1], out=new[:, 1, 1:])
    torch.ne(bl[:, 1:], bl[:, :-1], out=new[:, 2, 1:])
    new[:, 2].logical_or_(new[:, 1])
    del sb, ib, sa, bl  # keep the peak memory low
    pos = torch.arange(T, dtype=rt, device=dev)
    zero = torch.zeros((), dtype=rt, device=dev)
    t = torch.cummax(torch.where(new, pos, zero), -1)[0]  # first position of its run
    del new
    # The b-run start is an order-preserving rank of b in [0, T); in (a, b) order:
    x = t[:, 0].gather(1, ia)
    del ia
    torch.sub(pos, t, out=t)  # place of each position in its run
    tie = t.sum(-1).to(torch.int64)  # [R, 3]: ytie, xtie, ntie
    g0 = 3 * (torch.einsum("rgt,rgt->rg", t, t).to(torch.int64) - tie)  # y0, x0, -
    g1 = 2 * g0 + 18 * tie  # y1, x1, -
    del t
    dis = _inversions(x, T)
    ytie, xtie, ntie = tie.unbind(-1)
    tot = n * (n - 1) // 2
    cmd = tot - xtie - ytie + ntie - 2 * dis
    return n, cmd, xtie, ytie, g0[:, 1], g1[:, 1], g0[:, 0], g1[:, 0], has_nan


def kendall_tau(
    a: Tensor, b: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Kendall tau-b and its two-sided asymptotic p-value, per row, over masked positions.

    For each row, with ``x = a[row][mask[row]]``, ``y = b[row][mask[row]]`` and
    ``n = len(x)``, this returns exactly what
    ``scipy.stats.kendalltau(x, y, method="asymptotic")`` (default
    ``variant="b"``, ``alternative="two-sided"``) returns (scipy 1.17
    ``scipy/stats/_stats_py.py``; same formulas in every scipy since 1.7):

    * ``P``/``Q`` concordant/discordant pairs, ``xtie``/``ytie`` pairs tied in
      ``x``/``y`` (a pair tied in both counts in both), ``tot = n(n-1)/2``::

          tau = (P - Q) / sqrt(tot - xtie) / sqrt(tot - ytie),  clipped to [-1, 1]

    * with tie groups of sizes ``c`` in ``x`` (resp. ``d`` in ``y``),
      ``x0 = sum c(c-1)(c-2)``, ``x1 = sum c(c-1)(2c+5)`` (``y0``, ``y1`` alike)
      and ``v = n(n-1)``, the variance of ``P - Q`` under independence
      (Kendall 1970; Noether 1967)::

          var = (v(2n+5) - x1 - y1) / 18 + 2 xtie ytie / v + x0 y0 / (9 v (n-2))
          z   = (P - Q) / sqrt(var),    p = 2 * Phi(-|z|)

    Degenerate rows — fewer than 2 valid positions, or ``x`` or ``y`` constant
    over the valid positions — give NaN for both tau and p (scipy returns NaN
    for these too), never an exception.  A NaN at a valid position of ``a`` or
    ``b`` also gives NaN (scipy's default ``nan_policy="propagate"``); ``±inf``
    are ordinary, comparable values.  For ``n == 2`` scipy itself raises
    ``ZeroDivisionError`` on the ``x0 y0 / (9 v (n-2))`` term although
    ``x0 = y0 = 0`` there; this function takes that term as 0, which gives
    ``tau = ±1``, ``var = 1``, ``p = 2 Phi(-1) ≈ 0.3173``.

    Implementation (Knight's algorithm, as scipy, batched): each row is sorted by
    ``b`` and then stably by ``a`` (``torch.sort``, so ``±inf`` and integers
    compare exactly; masked-out positions become NaN keys that sort last and tie
    with nothing).  The tie statistics come from the runs of equal values in the
    sorted rows, O(T) per row; ``P - Q = tot - xtie - ytie + ntie - 2 dis`` with
    ``ntie`` the pairs tied in both and ``dis`` the inversions of ``b``'s ranks in
    ``(a, b)`` order, counted in O(T^1.5) per row (blocks of ~2 sqrt(T)
    positions: direct comparisons inside a block, cumulated per-block histograms
    across blocks).  Every count is an exact integer (small counts in float32
    only where every partial sum stays below 2**24, otherwise float64 / int64);
    the final formulas are in ``float64``.  Rows are processed in chunks of at
    most ~16M work entries.  No Python loop over examples, no host
    synchronisation.

    Args:
        a: ``[B, T]`` or ``[T]`` real-valued tensor (floating, integer or bool).
        b: same shape as ``a`` (dtype may differ).
        mask: ``[B, T]``/``[T]`` bool (or 0/1 integer), True = position counts;
            ``None`` = all positions count.

    Returns:
        ``(tau, pvalue)``: ``float64`` tensors of shape ``[B]`` (0-d for 1-D
        input) on the device of ``a``.  Always ``float64``, whatever the input
        dtypes.
    """
    require_tensor(a, "a")
    require_tensor(b, "b")
    require_real(a, "a")
    require_real(b, "b")
    require_rows(a, "a")
    if tuple(b.shape) != tuple(a.shape):
        raise ValueError(
            f"`b` must have the same shape as `a` {tuple(a.shape)}, got {tuple(b.shape)}"
        )
    if b.device != a.device:
        raise ValueError(f"`b` is on {b.device} but `a` is on {a.device}")
    m = None
    if mask is not None:
        m = as_bool_mask(mask, a)
        if m.device != a.device:
            raise ValueError(f"`mask` is on {m.device} but `a` is on {a.device}")

    squeeze = a.dim() == 1
    if squeeze:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
        m = None if m is None else m.unsqueeze(0)
    B, T = a.shape

    rows = max(1, _PAIR_BUDGET // _row_cost(T))
    parts = [
        _chunk_stats(
            a[s : s + rows], b[s : s + rows], None if m is None else m[s : s + rows]
        )
        for s in range(0, B, rows)
    ]
    if len(parts) == 1:
        stats = list(parts[0])
    elif parts:
        stats = [torch.cat(col) for col in zip(*parts)]
    else:  # B == 0
        stats = [torch.zeros(0, dtype=torch.int64, device=a.device)] * 9
    has_nan = stats.pop().to(torch.bool)
    n, cmd, xtie, ytie, x0, x1, y0, y1 = (s.to(torch.float64) for s in stats)

    tot = torch.div(n * (n - 1), 2, rounding_mode="floor")
    invalid = (n < 2) | (xtie == tot) | (ytie == tot) | has_nan

    one = torch.ones((), dtype=torch.float64, device=a.device)
    # Safe denominators on invalid rows (their results are replaced by NaN).
    # (rsqrt rather than 1 / sqrt: fewer intra-op parallel regions on small rows)
    tau = cmd * torch.rsqrt(torch.where(invalid, one, tot - xtie)) * torch.rsqrt(
        torch.where(invalid, one, tot - ytie)
    )
    tau = tau.clamp(-1.0, 1.0)

    v = n * (n - 1.0)
    v_safe = torch.where(invalid, one, v)
    third_den = 9.0 * v * (n - 2.0)
    third = torch.where(
        third_den > 0,
        x0 * y0 / torch.where(third_den > 0, third_den, one),
        torch.zeros((), dtype=torch.float64, device=a.device),
    )
    var = (v * (2.0 * n + 5.0) - x1 - y1) / 18.0 + (2.0 * xtie * ytie) / v_safe + third
    z = cmd * torch.rsqrt(torch.where(invalid, one, var))
    pvalue = 2.0 * torch.special.ndtr(-torch.abs(z))

    nan = torch.full((), math.nan, dtype=torch.float64, device=a.device)
    tau = torch.where(invalid, nan, tau)
    pvalue = torch.where(invalid, nan, pvalue)
    if squeeze:
        tau, pvalue = tau.squeeze(0), pvalue.squeeze(0)
    return tau, pvalue
