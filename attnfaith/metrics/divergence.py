"""Distances between attention / probability distributions (nats).

Jain & Wallace (2019) compare attention distributions with the total variation
distance and the Jensen–Shannon divergence, and output distributions with
TVD; Serrano & Smith (2019, "Is Attention Interpretable?") measure the change
of the output distribution as the JS divergence of ``softmax(logits)`` in nats.

Every function reduces over ``dim`` (default: last axis), supports arbitrary
leading dimensions and broadcasting between its two arguments, keeps the
result on the input's device and in the promoted floating dtype of the inputs,
and is differentiable with finite gradients at zeros (zeros are handled by
masking à la ``xlogy``, never by adding an epsilon).

The inputs are assumed to be probability vectors along ``dim`` (non-negative,
summing to 1); this is not checked, to avoid device synchronisation.
Non-positive entries of ``p`` contribute 0 to ``p log(...)`` terms.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["tvd", "jsd", "kl_div", "js_from_logits"]

_LN2 = math.log(2.0)


def _check_pair(p: object, q: object, pn: str, qn: str) -> tuple[Tensor, Tensor]:
    for x, name in ((p, pn), (q, qn)):
        if not isinstance(x, Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(
                f"`{name}` must be a floating-point tensor, got dtype {x.dtype}"
            )
    assert isinstance(p, Tensor) and isinstance(q, Tensor)
    try:
        torch.broadcast_shapes(p.shape, q.shape)
    except RuntimeError as e:
        raise ValueError(
            f"`{pn}` {tuple(p.shape)} and `{qn}` {tuple(q.shape)} are not broadcastable"
        ) from e
    if p.device != q.device:
        raise ValueError(f"`{pn}` is on {p.device} but `{qn}` is on {q.device}")
    dtype = torch.promote_types(p.dtype, q.dtype)
    return p.to(dtype), q.to(dtype)


def _plogp_ratio(p: Tensor, log_p: Tensor, log_r: Tensor) -> Tensor:
    """Elementwise ``p * (log_p - log_r)`` with the ``0 log 0 = 0`` convention.

    Where ``p <= 0`` the result is exactly 0 and the logs are replaced by 0
    before use, so no NaN/inf can leak into values or gradients.
    """
    pos = p > 0
    zero = torch.zeros((), dtype=p.dtype, device=p.device)
    lp = torch.where(pos, log_p, zero)
    lr = torch.where(pos, log_r, zero)
    return torch.where(pos, p * (lp - lr), zero)


def tvd(p: Tensor, q: Tensor, dim: int = -1) -> Tensor:
    """Total variation distance ``0.5 * sum_dim |p - q|``.

    In ``[0, 1]`` for probability vectors.  Used by Jain & Wallace (2019) to
    compare output distributions (``TVD(ŷ1, ŷ2) = ½ Σ |ŷ1 − ŷ2|``).

    Args:
        p, q: floating tensors, broadcastable to each other.
        dim: the axis holding the distribution.

    Returns:
        The broadcast shape with ``dim`` removed, in the promoted dtype.
    """
    p, q = _check_pair(p, q, "p", "q")
    return 0.5 * (p - q).abs().sum(dim)


def kl_div(p: Tensor, q: Tensor, dim: int = -1) -> Tensor:
    """Kullback–Leibler divergence ``KL(p ‖ q) = sum_dim p log(p / q)`` in nats.

    Terms with ``p = 0`` are 0 (whatever ``q``); a term with ``q = 0 < p`` is
    ``+inf``, so the result is ``+inf`` — matching ``scipy.stats.entropy(p, q)``
    and ``scipy.special.rel_entr``.  Note the argument order is the
    mathematical one, unlike ``torch.nn.functional.kl_div(input=log q, target=p)``.

    Args:
        p, q: floating tensors (probability vectors along ``dim``), broadcastable.
        dim: the axis holding the distribution.
    """
    p, q = _check_pair(p, q, "p", "q")
    p, q = torch.broadcast_tensors(p, q)
    pos = p > 0
    one = torch.ones((), dtype=p.dtype, device=p.device)
    # Safe logs: only evaluated at positions where p > 0; q = 0 there gives +inf.
    log_p = torch.log(torch.where(pos, p, one))
    log_q = torch.log(torch.where(pos, q, one))
    return _plogp_ratio(p, log_p, log_q).sum(dim)


def jsd(p: Tensor, q: Tensor, dim: int = -1) -> Tensor:
    """Jensen–Shannon divergence in nats, ``½ KL(p ‖ m) + ½ KL(q ‖ m)``, ``m = (p+q)/2``.

    ``0 log 0 = 0`` is handled by masking (xlogy-style), not by an epsilon, so
    ``jsd(p, p) == 0`` exactly and two disjoint one-hots give ``ln 2`` up to
    rounding.  The result is clamped to ``[0, ln 2]`` (its mathematical range)
    to remove rounding excursions.  Equals
    ``scipy.spatial.distance.jensenshannon(p, q) ** 2`` (natural-log base).
    Jain & Wallace (2019) use it to compare attention distributions.

    Args:
        p, q: floating tensors (probability vectors along ``dim``), broadcastable.
        dim: the axis holding the distribution.
    """
    p, q = _check_pair(p, q, "p", "q")
    p, q = torch.broadcast_tensors(p, q)
    m = 0.5 * (p + q)
    one = torch.ones((), dtype=p.dtype, device=p.device)
    # m > 0 wherever p > 0 or q > 0, so these safe logs are finite where used.
    log_m = torch.log(torch.where(m > 0, m, one))
    log_p = torch.log(torch.where(p > 0, p, one))
    log_q = torch.log(torch.where(q > 0, q, one))
    kl_pm = _plogp_ratio(p, log_p, log_m).sum(dim)
    kl_qm = _plogp_ratio(q, log_q, log_m).sum(dim)
    return (0.5 * kl_pm + 0.5 * kl_qm).clamp(0.0, _LN2)


def js_from_logits(logits_p: Tensor, logits_q: Tensor, dim: int = -1) -> Tensor:
    """``jsd(softmax(logits_p), softmax(logits_q))`` in nats, computed stably.

    Serrano & Smith (2019) measure the change in a classifier's output
    distribution as the JS divergence of the softmaxed logits (natural log).
    Works in log space: ``log p = log_softmax(logits_p)``,
    ``log m = logaddexp(log p, log q) - ln 2``, and
    ``JS = ½ Σ p (log p − log m) + ½ Σ q (log q − log m)``, with terms where the
    probability underflows to 0 (or logits are ``-inf``) taken as 0.  Clamped to
    ``[0, ln 2]``.  Large logits (e.g. ±1000) neither overflow nor lose the
    result.

    Args:
        logits_p, logits_q: floating tensors of unnormalised log-probabilities,
            broadcastable to each other.
        dim: the class axis.
    """
    logits_p, logits_q = _check_pair(logits_p, logits_q, "logits_p", "logits_q")
    logits_p, logits_q = torch.broadcast_tensors(logits_p, logits_q)
    log_p = torch.log_softmax(logits_p, dim=dim)
    log_q = torch.log_softmax(logits_q, dim=dim)
    # Positions where both logits are -inf have p = q = 0 and are skipped; keep
    # logaddexp away from (-inf, -inf) so its backward cannot produce NaN.
    live = (log_p > -math.inf) | (log_q > -math.inf)
    zero = torch.zeros((), dtype=log_p.dtype, device=log_p.device)
    log_m = torch.where(
        live,
        torch.logaddexp(torch.where(live, log_p, zero), torch.where(live, log_q, zero))
        - _LN2,
        zero,
    )
    p = log_p.exp()
    q = log_q.exp()
    kl_pm = _plogp_ratio(p, log_p, log_m).sum(dim)
    kl_qm = _plogp_ratio(q, log_q, log_m).sum(dim)
    return (0.5 * kl_pm + 0.5 * kl_qm).clamp(0.0, _LN2)
