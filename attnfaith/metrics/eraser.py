"""The removal-based faithfulness metrics used after 2019, as pure torch functions (torch in, torch out, batched).

* ERASER's **comprehensiveness** and **sufficiency** (DeYoung et al. 2020, "ERASER: A Benchmark to Evaluate
  Rationalized NLP Models", section 4.2): with ``p`` the original probability of the predicted class ``ŷ`` and
  ``r_k`` the ``k`` top-ranked items,

  ``comprehensiveness_k = p(ŷ | x) − p(ŷ | x \\ r_k)`` (the top items removed; higher: more faithful),
  ``sufficiency_k = p(ŷ | x) − p(ŷ | r_k)`` (only the top items kept; lower: more faithful),

  at the bins ``k = ⌈f · n⌉`` for ``f`` in :data:`ERASER_FRACTIONS` (1, 5, 10, 20, 50 %, ``n`` the example's items;
  :func:`top_fraction_sizes`), and their **AOPC** is the mean over the bins (:func:`bin_aopc`; ERASER's
  ``compute_aopc_scores``).
* **log-odds** (Shrikumar et al. 2017, "Learning Important Features Through Propagating Activation Differences",
  as used by DIG, Sanyal & Ren 2021): ``log p(ŷ | x') − log p(ŷ | x)`` with the top-k items of ``x`` replaced by a
  baseline id in ``x'`` (:func:`log_odds`; lower: more faithful).
* **Soft** comprehensiveness and sufficiency (Zhao & Aletras 2023, "Incorporating Attribution Importance for
  Improving Faithfulness Metrics"): the scores min-max normalised to ``[0, 1]`` (:func:`minmax_normalize`), and the
  normalisation by the fully perturbed input of Carton et al. (2020) that their code uses
  (:func:`normalized_sufficiency`, :func:`normalized_comprehensiveness`).
* **Normalised AOPC** (Edin et al. 2024, "Normalized AOPC: Fixing Misleading Faithfulness Metrics for Feature
  Attribution Explainability"): the AOPC of an order over every removal step ``k = 1..n``
  (:func:`curve_aopc`) rescaled by the lowest and highest AOPC over all orders of the example's items
  (:func:`normalized_aopc`); the exact bounds from the drops of all ``2^n`` subsets (:func:`exact_aopc_bounds`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from .validation import require_tensor

__all__ = [
    "ERASER_FRACTIONS",
    "top_fraction_sizes",
    "probability_drop",
    "bin_aopc",
    "log_odds",
    "minmax_normalize",
    "normalized_sufficiency",
    "normalized_comprehensiveness",
    "curve_aopc",
    "exact_aopc_bounds",
    "normalized_aopc",
]

#: ERASER's bins: the top 1, 5, 10, 20 and 50 % of the items (DeYoung et al. 2020, section 4.2)
ERASER_FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.50)

# f·n is computed in float64 and moved by 1e-9 before rounding, so that 0.1·30 (3.0000000000000004) gives 3
_SLACK = 1e-9


def _check_fractions(fractions: Sequence[float], name: str = "fractions") -> tuple[float, ...]:
    try:
        out = tuple(float(f) for f in fractions)
    except TypeError:
        raise TypeError(f"`{name}` must be a sequence of numbers in (0, 1], got {fractions!r}") from None
    if not out or any(not (0.0 < f <= 1.0) or math.isnan(f) for f in out):
        raise ValueError(f"`{name}` must be a non-empty sequence of numbers in (0, 1], got {fractions!r}")
    return out


def top_fraction_sizes(n_items: Tensor, fractions: Sequence[float] = ERASER_FRACTIONS,
                       rounding: str = "ceil") -> Tensor:
    """``k[b, j]`` (LongTensor ``[B, K]``): how many top-ranked items bin ``j`` removes (comprehensiveness) or keeps
    (sufficiency): ``⌈fractions[j] · n_items[b]⌉`` (``rounding="ceil"``, the default) or
    ``⌊fractions[j] · n_items[b]⌋`` (``"floor"``: ferret's ``int(percentage * len)``).

    The ceiling makes every bin hold at least one item of a non-empty example (the 1 % bin of a 12-token sentence is
    its top token); with the floor, small bins hold 0 items (ferret skips them; the evaluators give NaN there).
    ``f · n`` is taken in float64 and moved by ``1e-9`` towards the exact value before rounding, so an exact product
    (``0.1 · 30 = 3.0000000000000004``) is not rounded to the next integer. 0 for an example without items.
    """
    require_tensor(n_items, "n_items")
    if n_items.is_floating_point() or n_items.dtype == torch.bool:
        raise TypeError(f"`n_items` must be an integer tensor, got {n_items.dtype}")
    if rounding not in ("ceil", "floor"):
        raise ValueError(f"`rounding` must be 'ceil' or 'floor', got {rounding!r}")
    f = torch.tensor(_check_fractions(fractions), dtype=torch.float64, device=n_items.device)
    x = n_items.to(torch.float64)[..., None] * f
    k = torch.ceil(x - _SLACK) if rounding == "ceil" else torch.floor(x + _SLACK)
    return torch.minimum(k.clamp_min(0).to(torch.long), n_items[..., None].long())


def probability_drop(p_original: Tensor, p_variant: Tensor) -> Tensor:
    """``p_original[b] − p_variant[b, ...]``: comprehensiveness when the variants miss the top items, sufficiency
    when they keep only them (ERASER). ``p_original`` ``[B]``, ``p_variant`` ``[B]`` or ``[B, K]``."""
    require_tensor(p_original, "p_original")
    require_tensor(p_variant, "p_variant")
    if p_variant.shape[:1] != p_original.shape[:1] or p_original.dim() != 1:
        raise ValueError(f"`p_original` must be [B] and `p_variant` [B, ...]; got {tuple(p_original.shape)} and "
                         f"{tuple(p_variant.shape)}")
    return p_original.view(-1, *([1] * (p_variant.dim() - 1))) - p_variant


def bin_aopc(values: Tensor) -> Tensor:
    """``[B]``: the mean of ``values`` ``[B, K]`` over its bins, NaN bins left out (ERASER's AOPC: the mean over
    the bins of comprehensiveness or sufficiency; NaN for a row of NaN only)."""
    require_tensor(values, "values")
    if values.dim() != 2:
        raise ValueError(f"`values` must be [B, K], got {tuple(values.shape)}")
    return torch.nanmean(values, dim=-1)


def log_odds(p_original: Tensor, p_variant: Tensor) -> Tensor:
    """``log p_variant − log p_original`` (natural log), each probability clamped below at the dtype's smallest
    normal number so that a probability that underflowed to 0 gives a large finite value, not ``-inf``. Shapes as
    :func:`probability_drop`. Shrikumar et al. (2017); DIG's ``calculate_log_odd`` (negative: the replaced tokens
    supported the prediction)."""
    drop = probability_drop(p_original, p_variant)  # shape checks
    tiny = torch.finfo(drop.dtype).tiny
    po = p_original.view(-1, *([1] * (p_variant.dim() - 1)))
    return torch.log(p_variant.clamp_min(tiny)) - torch.log(po.clamp_min(tiny))


def minmax_normalize(scores: Tensor, items: Tensor) -> Tensor:
    """Scores min-max normalised over each row's items: ``(s − min) / (max − min)`` in ``[0, 1]`` (the top item
    1, the bottom 0); 1 at every item of a row whose item scores are all equal; 0 at positions that are not items.
    ``scores`` float ``[B, T]``, ``items`` BoolTensor ``[B, T]``. The normalisation of Zhao & Aletras (2023) before
    the scores weight the embeddings."""
    require_tensor(scores, "scores")
    require_tensor(items, "items")
    if items.dtype != torch.bool or items.shape != scores.shape:
        raise ValueError("`items` must be a BoolTensor of the shape of `scores`")
    s = scores.to(torch.promote_types(scores.dtype, torch.float32))
    big = torch.finfo(s.dtype).max
    lo = torch.where(items, s, torch.full_like(s, big)).amin(-1, keepdim=True)
    hi = torch.where(items, s, torch.full_like(s, -big)).amax(-1, keepdim=True)
    span = hi - lo
    flat = span <= 0
    out = (s - lo) / torch.where(flat, torch.ones_like(span), span)
    out = torch.where(flat, torch.ones_like(out), out)
    return torch.where(items, out.clamp(0.0, 1.0), torch.zeros_like(out))


def _null_sufficiency(p_original: Tensor, p_empty: Tensor) -> Tensor:
    # Suff(x, ∅) = 1 − max(0, p(ŷ|x) − p(ŷ|∅)), less 1e-4 as in the authors' code (no division by 0)
    return 1.0 - (p_original - p_empty).clamp_min(0.0) - 1e-4


def normalized_sufficiency(p_original: Tensor, p_kept: Tensor, p_empty: Tensor) -> Tensor:
    """Normalised sufficiency of Carton et al. (2020), used by Zhao & Aletras (2023) for the soft metric:
    ``max(0, (S(x') − S(∅)) / (1 − S(∅)))`` with ``S(x') = 1 − max(0, p(ŷ|x) − p(ŷ|x'))`` and ``S(∅)`` the same for
    the fully perturbed input, less ``1e-4`` (their code's guard), clipped to ``[0, 1]``. Higher: the kept part is
    more sufficient (1: the prediction is fully kept). All ``[B]``."""
    s = 1.0 - probability_drop(p_original, p_kept).clamp_min(0.0)
    s0 = _null_sufficiency(p_original, p_empty)
    return ((s - s0) / (1.0 - s0)).clamp(0.0, 1.0)


def normalized_comprehensiveness(p_original: Tensor, p_removed: Tensor, p_empty: Tensor) -> Tensor:
    """Normalised comprehensiveness of Carton et al. (2020), used by Zhao & Aletras (2023):
    ``max(0, p(ŷ|x) − p(ŷ|x')) / (1 − S(∅))`` (``S(∅)`` as in :func:`normalized_sufficiency`), clipped to
    ``[0, 1]``: where the fully perturbed input does not lower ``p(ŷ)`` the denominator is ``1e-4`` and the authors'
    code returns values in the thousands; the clip makes any drop count 1 there. Higher: more faithful. All
    ``[B]``."""
    c = probability_drop(p_original, p_removed).clamp_min(0.0)
    return (c / (1.0 - _null_sufficiency(p_original, p_empty))).clamp(0.0, 1.0)


def curve_aopc(drops: Tensor, n_items: Tensor) -> Tensor:
    """``[B]``: ``1/n Σ_{k=1}^{n} drops[b, k−1]``, the AOPC of one removal order over every step (Edin et al. 2024;
    ``drops[b, k−1] = p(ŷ|x) − p(ŷ | top k removed)``, ``[B, T]``, entries past ``n_items[b]`` ignored). NaN for a
    row without items. (Samek et al.'s AOPC of :class:`attnfaith.ErasureFlip` also counts step 0 and divides by
    ``n + 1``.)"""
    require_tensor(drops, "drops")
    B, T = drops.shape
    n = n_items.to(drops.device).long()
    steps = torch.arange(T, device=drops.device)[None, :] < n[:, None]
    total = torch.where(steps, drops, torch.zeros_like(drops)).sum(-1)
    return total / n.to(drops.dtype).where(n > 0, torch.full_like(total, float("nan")))


def _subset_tables(n: int, device: torch.device) -> tuple[list[Tensor], Tensor, Tensor]:
    """Subsets of ``n`` items as bitmasks grouped by size, and for every subset its predecessors (one item
    fewer, ``[2^n, n]``) with a validity mask."""
    full = 1 << n
    subsets = torch.arange(full, device=device)
    bits = (subsets[:, None] >> torch.arange(n, device=device)[None, :]) & 1  # [2^n, n]
    size = bits.sum(-1)
    layers = [subsets[size == c] for c in range(n + 1)]
    pred = subsets[:, None] ^ (1 << torch.arange(n, device=device))[None, :]
    return layers, pred, bits.bool()


def exact_aopc_bounds(drops: Tensor) -> tuple[Tensor, Tensor]:
    """``(lower, upper)`` ``[B]``: the lowest and highest :func:`curve_aopc` over all ``n!`` removal orders of ``n``
    items, from the drops of every subset: ``drops[b, S] = p(ŷ|x) − p(ŷ | the items in bitmask S removed)``,
    ``[B, 2^n]`` (``drops[:, 0]`` is not used).

    An order visits the chain ``∅ ⊂ S_1 ⊂ … ⊂ S_n`` (``|S_k| = k``) and its AOPC is ``1/n Σ_k drops[S_k]``: the best
    chain ending at ``S`` is ``drops[S] + max_{i∈S} best(S \\ {i})`` (dynamic programming over the subsets by size,
    ``O(2^n · n)``), which equals the maximum over all orders that Edin et al.'s code enumerates."""
    require_tensor(drops, "drops")
    if drops.dim() != 2:
        raise ValueError(f"`drops` must be [B, 2^n], got {tuple(drops.shape)}")
    full = drops.shape[1]
    n = full.bit_length() - 1
    if full < 2 or (1 << n) != full:
        raise ValueError(f"`drops` must have 2^n columns (n >= 1), got {full}")
    layers, pred, bits = _subset_tables(n, drops.device)
    d = drops.to(torch.float64)
    hi = torch.zeros_like(d)
    lo = torch.zeros_like(d)
    for c in range(1, n + 1):
        S = layers[c]
        prev = pred[S]  # [m, n]
        ok = bits[S]  # [m, n]: item i in S
        best_hi = torch.where(ok[None], hi[:, prev], torch.full_like(hi[:, prev], -math.inf)).amax(-1)
        best_lo = torch.where(ok[None], lo[:, prev], torch.full_like(lo[:, prev], math.inf)).amin(-1)
        hi[:, S] = d[:, S] + best_hi
        lo[:, S] = d[:, S] + best_lo
    return (lo[:, full - 1] / n).to(drops.dtype), (hi[:, full - 1] / n).to(drops.dtype)


def normalized_aopc(aopc: Tensor, lower: Tensor, upper: Tensor, min_span: float = 1e-6) -> Tensor:
    """``(aopc − lower) / (upper − lower)`` (Edin et al. 2024): 0 for the worst order, 1 for the best; NaN where
    ``upper − lower < min_span`` (an example with one item, or a model whose output no order moves beyond float
    rounding)."""
    span = upper - lower
    ok = span >= min_span
    return torch.where(ok, (aopc - lower) / torch.where(ok, span, torch.ones_like(span)),
                       torch.full_like(span, float("nan")))
