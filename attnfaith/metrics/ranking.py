"""Rankings of token positions by attribution score, with padding masks.

All functions are batched over a leading batch axis (``[B, T]``; a 1-D ``[T]``
input is treated as a single row and the row axis is dropped again on output),
device-agnostic (everything stays on the input's device; no ``.cpu()``,
``.item()`` or NumPy), and free of Python loops over examples.

Conventions shared with the rest of :mod:`attnfaith.metrics`:

* ``mask`` is ``True`` where a position is a real token that counts, ``False``
  for padding / positions to ignore.  ``None`` means every position counts.
  Integer masks holding only 0/1 are accepted and converted to ``bool``.
* Ties in a ranking are broken by the lower position first (stable), which is
  what ``sorted(range(T), key=lambda i: (-s[i], i))`` does in plain Python and
  what the removal orders of Serrano & Smith (2019, "Is Attention
  Interpretable?") need to be reproducible.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from .validation import as_bool_mask, require_real, require_rows, require_tensor

__all__ = [
    "DescendingOrder",
    "descending_order",
    "topk_mask",
    "random_scores",
]


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


class DescendingOrder(NamedTuple):
    """Result of :func:`descending_order`.

    Attributes:
        order: ``LongTensor [B, T]`` (or ``[T]``): ``order[b, r]`` is the position
            holding rank ``r`` (0 = highest score).  The first ``n_valid[b]``
            entries are the valid positions; the rest are the masked-out ones,
            in increasing position order.
        n_valid: ``LongTensor [B]`` (or 0-d): number of valid positions per row,
            ``mask.sum(-1)``.
    """

    order: Tensor
    n_valid: Tensor


def descending_order(scores: Tensor, mask: Tensor | None = None) -> DescendingOrder:
    """Positions sorted by descending score; masked-out positions last.

    Definition, per row ``b``: the valid positions ``{i : mask[b, i]}`` ordered
    by the key ``(-scores[b, i], i)`` (higher score first, ties broken by the
    lower position — a stable sort), followed by the masked-out positions in
    increasing position order.  This is exactly
    ``sorted(valid, key=lambda i: (-s[i], i)) + sorted(invalid)``.

    ``+inf``/``-inf`` scores are allowed at valid positions and rank first/last
    among the valid ones (a valid ``-inf`` still comes before every masked
    position).  ``-0.0`` and ``0.0`` are treated as equal.  Masked positions may
    hold anything, including NaN.

    Implementation: a stable sort (``torch.sort(..., stable=True)``; descending
    order of the scores is the ascending order of the negated scores) with
    masked positions replaced by a constant, followed by a second stable sort on
    the "is masked" flag, so that masked positions land after every valid one
    regardless of their (or the valid positions') values.

    Args:
        scores: ``[B, T]`` or ``[T]`` real-valued scores (floating, integer or
            bool).
        mask: same shape, ``True`` = valid position; ``None`` = all valid.
            0/1 integer masks are accepted.

    Returns:
        ``DescendingOrder(order, n_valid)`` (a named tuple); ``order`` is a
        ``LongTensor`` with the shape of ``scores``, ``n_valid`` has the shape of
        ``scores`` without its last axis.

    Raises:
        TypeError: ``scores`` is not a real tensor; ``mask`` is not bool/integer.
        ValueError: bad shapes, or NaN at a valid position of ``scores``.
    """
    require_tensor(scores, "scores")
    require_real(scores, "scores")
    require_rows(scores, "scores")
    m = as_bool_mask(mask, scores)

    if scores.is_floating_point():
        if scores.numel() and bool((torch.isnan(scores) & m).any()):
            raise ValueError("`scores` contains NaN at a valid (unmasked) position")
        zero = torch.zeros((), dtype=scores.dtype, device=scores.device)
        # `+ 0.0` turns -0.0 into +0.0 so that every backend sorts them as equal.
        key = torch.where(m, scores, zero) + 0.0
    else:
        zero = torch.zeros((), dtype=scores.dtype, device=scores.device)
        key = torch.where(m, scores, zero)

    # 1) stable sort by descending score: ties keep increasing position order.
    order = torch.sort(key, dim=-1, descending=True, stable=True).indices
    # 2) stable sort on the masked flag: valid (0) before masked (1); within each
    #    group the order from step 1 is kept.  Masked positions all had the same
    #    key in step 1, so they stay in increasing position order.
    masked_flag = (~m).to(torch.uint8).gather(-1, order)
    second = torch.sort(masked_flag, dim=-1, stable=True).indices
    order = order.gather(-1, second)
    n_valid = m.sum(-1)
    return DescendingOrder(order, n_valid)


def topk_mask(
    scores: Tensor, k: int | Tensor, mask: Tensor | None = None
) -> Tensor:
    """Boolean mask of the ``k`` highest-scoring valid positions of each row.

    Definition: ``out[b, i]`` is True iff ``i`` is among the first
    ``min(k_b, n_valid[b])`` entries of ``descending_order(scores, mask).order[b]``
    — i.e. ties at the boundary are broken by the lower position, exactly as
    in :func:`descending_order`, so exactly ``min(k_b, n_valid[b])`` positions are
    selected, never a masked one.

    Args:
        scores: ``[B, T]`` or ``[T]`` real-valued scores.
        k: a non-negative Python int (same for every row) or a ``LongTensor``
            ``[B]`` (one per row; 0-d for 1-D ``scores``).
        mask: same shape as ``scores``, True = valid; ``None`` = all valid.

    Returns:
        ``BoolTensor`` with the shape of ``scores``.
    """
    order, _ = descending_order(scores, mask)
    T = scores.shape[-1]
    if isinstance(k, bool) or not isinstance(k, (int, Tensor)):
        raise TypeError(f"`k` must be an int or an integer tensor, got {type(k).__name__}")
    if isinstance(k, int):
        if k < 0:
            raise ValueError(f"`k` must be non-negative, got {k}")
        kk = torch.full(scores.shape[:-1], k, dtype=torch.long, device=scores.device)
    else:
        if k.is_floating_point() or k.is_complex() or k.dtype == torch.bool:
            raise TypeError(f"`k` must be an integer tensor, got dtype {k.dtype}")
        if tuple(k.shape) != tuple(scores.shape[:-1]):
            raise ValueError(
                f"`k` must have shape {tuple(scores.shape[:-1])} (one per row), "
                f"got {tuple(k.shape)}"
            )
        if k.numel() and bool((k < 0).any()):
            raise ValueError("`k` must be non-negative")
        kk = k.to(device=scores.device, dtype=torch.long)
    m = as_bool_mask(mask, scores)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(T, device=scores.device).expand_as(order))
    return (ranks < kk.unsqueeze(-1)) & m


def random_scores(
    mask: Tensor,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Uniform random scores for random-ranking baselines.

    Definition: i.i.d. ``U[0, 1)`` draws at every position (drawn for the full
    ``mask.shape`` with ``torch.rand(..., generator=generator)``, so a given seed
    gives the same values whatever the mask), set to ``0`` at masked-out
    positions. With one generator per row (a list of CPU generators, e.g.
    :func:`attnfaith.seeding.example_generators`, for a ``[B, T]`` mask), row ``b``
    draws ``torch.rand(k_b, generator=generator[b])`` for its ``k_b`` valid
    positions only, in increasing position order (:func:`attnfaith.seeding.rand_at`):
    the values then depend on the row's own valid positions and generator, not on
    its batch-mates, the padding or the device.  ``descending_order(random_scores(mask, g), mask).order`` is a
    uniformly random permutation of each row's valid positions (ties have
    probability ~0), the "random order" baseline of Serrano & Smith (2019).

    Args:
        mask: ``[B, T]`` or ``[T]`` bool (or 0/1 integer) mask, True = valid.
        generator: a ``torch.Generator`` on ``mask.device`` for reproducibility;
            ``None`` uses torch's global RNG; or a sequence of ``B`` CPU generators,
            one per row (the result is moved to ``mask.device``).
        dtype: floating dtype of the result (default ``float32``).

    Returns:
        Tensor of ``dtype`` on ``mask.device`` with the shape of ``mask``.
    """
    require_tensor(mask, "mask")
    if not dtype.is_floating_point:
        raise TypeError(f"`dtype` must be a floating dtype, got {dtype}")
    m = as_bool_mask(mask, mask)
    if isinstance(generator, (list, tuple)):
        if m.dim() != 2 or len(generator) != m.shape[0]:
            raise ValueError(
                f"`generator`: one generator per row of a [B, T] mask expected, got {len(generator)} for a mask "
                f"of shape {tuple(m.shape)}"
            )
        if not all(isinstance(g, torch.Generator) for g in generator):
            raise TypeError("`generator` must hold torch.Generator objects")
        from attnfaith.seeding import rand_at

        return rand_at(m, generator, dtype=dtype)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"`generator` must be a torch.Generator or None, got {type(generator).__name__}"
        )
    u = torch.rand(m.shape, generator=generator, device=m.device, dtype=dtype)
    return torch.where(m, u, torch.zeros((), dtype=dtype, device=m.device))
