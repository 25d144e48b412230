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

from .ranking import _as_bool_mask, _require_real, _require_rows, _require_tensor

__all__ = ["kendall_tau"]

# Upper bound on B_chunk * T * T pair entries materialised at once; rows are
# processed in chunks of at most this many pair entries (at least one row).
_PAIR_BUDGET = 1 << 24


def _sign_matrix(x: Tensor) -> Tensor:
    """``int8 [B, T, T]`` with ``s[b, i, j] = sign(x[b, i] - x[b, j])``.

    Computed with comparisons (not a subtraction), so ``±inf`` work and
    integer inputs are compared exactly.  NaN compares as a tie here; rows with
    NaN at a valid position are turned into NaN by the caller.
    """
    xi = x.unsqueeze(-1)
    xj = x.unsqueeze(-2)
    return (xi > xj).to(torch.int8) - (xi < xj).to(torch.int8)


def _chunk_stats(a: Tensor, b: Tensor, m: Tensor) -> tuple[Tensor, ...]:
    """Integer pair statistics of one chunk of rows (all ``int64 [b]``).

    Returns ``(n, con_minus_dis, xtie, ytie, x0, x1, y0, y1)`` with scipy's
    meaning:

    * ``con_minus_dis`` = sum over valid pairs ``i < j`` of
      ``sign(a_i - a_j) * sign(b_i - b_j)`` (concordant minus discordant);
    * ``xtie`` = number of valid pairs tied in ``a`` (``sum_g c_g (c_g-1)/2`` over
      tie groups ``g`` of size ``c_g``), ``ytie`` likewise for ``b``;
    * ``x0 = sum_g c_g (c_g-1)(c_g-2)``, ``x1 = sum_g c_g (c_g-1)(2 c_g+5)``
      (and ``y0``, ``y1`` for ``b``).

    Group sums are obtained per position: with ``c_i`` the size of the tie group
    containing valid position ``i``, ``sum_g f(c_g) = sum_i f(c_i) / c_i``.
    """
    mj = m.unsqueeze(-2).to(torch.int8)  # [b, 1, T]
    mi = m.to(torch.int64)  # [b, T]
    sa = _sign_matrix(a)
    sb = _sign_matrix(b)

    # Full symmetric sum over valid (i, j) counts every pair twice (diagonal = 0).
    cmd2 = (((sa * sb) * mj).sum(-1) * mi).sum(-1)
    # c_i: number of valid j (including i itself) tied with i.
    ca = (((sa == 0).to(torch.int8) * mj).sum(-1)) * mi
    cb = (((sb == 0).to(torch.int8) * mj).sum(-1)) * mi
    del sa, sb

    n = mi.sum(-1)
    # For invalid positions c_i = 0 -> use masks so they contribute nothing.
    ca1 = (ca - 1) * mi
    cb1 = (cb - 1) * mi
    xtie2 = ca1.sum(-1)  # = 2 * xtie
    ytie2 = cb1.sum(-1)
    x0 = (ca1 * (ca - 2)).sum(-1)
    x1 = (ca1 * (2 * ca + 5)).sum(-1)
    y0 = (cb1 * (cb - 2)).sum(-1)
    y1 = (cb1 * (2 * cb + 5)).sum(-1)
    return n, cmd2 // 2, xtie2 // 2, ytie2 // 2, x0, x1, y0, y1


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

    Implementation: O(T²) pairwise sign comparisons via broadcasting, with all
    counts in exact ``int64`` and the final formulas in ``float64``; rows are
    processed in chunks so that at most ~16M pair entries (1-byte each) exist at
    a time.  No Python loop over examples, no host synchronisation.

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
    _require_tensor(a, "a")
    _require_tensor(b, "b")
    _require_real(a, "a")
    _require_real(b, "b")
    _require_rows(a, "a")
    if tuple(b.shape) != tuple(a.shape):
        raise ValueError(
            f"`b` must have the same shape as `a` {tuple(a.shape)}, got {tuple(b.shape)}"
        )
    if b.device != a.device:
        raise ValueError(f"`b` is on {b.device} but `a` is on {a.device}")
    m = _as_bool_mask(mask, a)
    if m.device != a.device:
        raise ValueError(f"`mask` is on {m.device} but `a` is on {a.device}")

    squeeze = a.dim() == 1
    if squeeze:
        a, b, m = a.unsqueeze(0), b.unsqueeze(0), m.unsqueeze(0)
    B, T = a.shape

    # Rows with a NaN at a valid position propagate NaN, like scipy.
    has_nan = torch.zeros(B, dtype=torch.bool, device=a.device)
    if a.is_floating_point():
        has_nan = has_nan | (torch.isnan(a) & m).any(-1)
    if b.is_floating_point():
        has_nan = has_nan | (torch.isnan(b) & m).any(-1)

    rows = max(1, _PAIR_BUDGET // max(T * T, 1))
    parts = [
        _chunk_stats(a[s : s + rows], b[s : s + rows], m[s : s + rows])
        for s in range(0, B, rows)
    ]
    if parts:
        stats = [torch.cat(col) for col in zip(*parts)]
    else:  # B == 0
        stats = [torch.zeros(0, dtype=torch.int64, device=a.device)] * 8
    n, cmd, xtie, ytie, x0, x1, y0, y1 = (s.to(torch.float64) for s in stats)

    tot = torch.div(n * (n - 1), 2, rounding_mode="floor")
    invalid = (n < 2) | (xtie == tot) | (ytie == tot) | has_nan

    one = torch.ones((), dtype=torch.float64, device=a.device)
    # Safe denominators on invalid rows (their results are replaced by NaN).
    tau = cmd / torch.sqrt(torch.where(invalid, one, tot - xtie)) / torch.sqrt(
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
    z = cmd / torch.sqrt(torch.where(invalid, one, var))
    pvalue = 2.0 * torch.special.ndtr(-torch.abs(z))

    nan = torch.full((), math.nan, dtype=torch.float64, device=a.device)
    tau = torch.where(invalid, nan, tau)
    pvalue = torch.where(invalid, nan, pvalue)
    if squeeze:
        tau, pvalue = tau.squeeze(0), pvalue.squeeze(0)
    return tau, pvalue
