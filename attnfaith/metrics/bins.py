"""Jain & Wallace's (2019) max-attention bins: a per-example value grouped by the example's largest attention weight.

``PlottingBC.plot_permutations`` and ``plot_multi_adversarial`` plot, per instance, a value (the median output
change under permuted attention; the JSD of the adversarial attention) against the instance's maximum attention
weight, binned into :data:`MAX_ATTENTION_BINS` ``[0, .25), [.25, .5), [.5, .75), [.75, 1]``. :func:`bin_summary`
gives those violin plots as numbers.
"""

from __future__ import annotations

import math

import torch

__all__ = ["MAX_ATTENTION_BINS", "max_over_items", "bin_summary"]

#: Jain & Wallace's bin edges of the maximum attention weight (4 bins over [0, 1]; the last one closed)
MAX_ATTENTION_BINS = (0.0, 0.25, 0.5, 0.75, 1.0)


def max_over_items(scores: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
    """``[B]``: ``max_t scores[b, t]`` over the positions with ``items[b, t]`` (every position when ``items`` is
    None); 0 for a row without items. ``scores`` ``[B, T]``, ``items`` BoolTensor ``[B, T]``."""
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise TypeError(f"`scores` must be a float tensor, got {type(scores).__name__}")
    if items is None:
        return scores.max(dim=-1).values
    if not isinstance(items, torch.Tensor) or items.dtype != torch.bool:
        raise TypeError("`items` must be a BoolTensor")
    if items.shape != scores.shape:
        raise ValueError(f"`items` has shape {tuple(items.shape)}, `scores` {tuple(scores.shape)}")
    return torch.where(items, scores, torch.zeros_like(scores)).max(dim=-1).values


def bin_summary(values: torch.Tensor, max_attention: torch.Tensor, name: str,
                edges: tuple[float, ...] = MAX_ATTENTION_BINS) -> dict[str, dict[str, float]]:
    """``values`` ``[B]`` grouped by ``max_attention`` ``[B]`` into the bins ``[edges[i], edges[i+1])`` (the last
    bin closed on the right), plus ``"all"``.

    Per group, over its finite values (NaN and ±inf left out): ``{"n": count, f"{name}_mean": mean,
    f"{name}_median": median}`` (median: mean of the two middle values for an even count, as numpy; NaN for an empty
    group). Bin labels: ``"[0.00, 0.25)"`` ... ``"[0.75, 1.00]"``. An example whose ``max_attention`` is NaN or
    outside ``[edges[0], edges[-1]]`` is in ``"all"`` only.
    """
    for arg, t in (("values", values), ("max_attention", max_attention)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"`{arg}` must be a tensor, got {type(t).__name__}")
        if t.dim() != 1:
            raise ValueError(f"`{arg}` must be 1-D [B], got shape {tuple(t.shape)}")
    if values.shape != max_attention.shape:
        raise ValueError(f"`max_attention` has {max_attention.shape[0]} entries, `values` {values.shape[0]}")
    values = values.detach().double().cpu()
    ma = max_attention.detach().double().cpu()
    out: dict[str, dict[str, float]] = {}
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        last = i == len(edges) - 2
        sel = (ma >= lo) & ((ma <= hi) if last else (ma < hi))
        out[f"[{lo:.2f}, {hi:.2f}{']' if last else ')'}"] = _group(values[sel], name)
    out["all"] = _group(values, name)
    return out


def _group(v: torch.Tensor, name: str) -> dict[str, float]:
    v = v[torch.isfinite(v)]
    n = int(v.numel())
    return {
        "n": n,
        f"{name}_mean": float(v.mean()) if n else math.nan,
        f"{name}_median": float(v.quantile(0.5)) if n else math.nan,
    }
