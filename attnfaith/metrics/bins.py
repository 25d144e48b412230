"""Jain & Wallace's (2019) max-attention bins: a per-example value grouped by the example's largest attention weight.

``PlottingBC.plot_permutations`` and ``plot_multi_adversarial`` plot, per instance, a value (the median output
change under permuted attention; the JSD of the adversarial attention) against the instance's maximum attention
weight, binned into :data:`MAX_ATTENTION_BINS` ``[0, .25), [.25, .5), [.5, .75), [.75, 1]``. :func:`bin_summary`
gives those violin plots as numbers (n, mean, median per bin), :func:`bin_quartiles` as box plots (n, mean and the
quartiles per bin); :func:`bin_masks` is the binning both share (and the figures use).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch

__all__ = ["MAX_ATTENTION_BINS", "Bin", "max_over_items", "bin_masks", "bin_summary", "bin_quartiles"]

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


class Bin(NamedTuple):
    """One bin of :func:`bin_masks`: its label (``"[0.25, 0.50)"``; the last bin ``"[0.75, 1.00]"``), edges, and
    which examples fall in it."""

    label: str
    lo: float
    hi: float
    mask: torch.Tensor


def bin_masks(max_attention: torch.Tensor, edges: tuple[float, ...] = MAX_ATTENTION_BINS) -> list[Bin]:
    """The bins ``[edges[i], edges[i+1])`` of ``max_attention`` ``[B]`` (the last bin closed on the right), each with
    the BoolTensor ``[B]`` (on the CPU) of the examples in it; an example whose value is NaN or outside
    ``[edges[0], edges[-1]]`` is in none."""
    ma = torch.as_tensor(max_attention).detach().double().cpu()
    out = []
    for i in range(len(edges) - 1):
        lo, hi = float(edges[i]), float(edges[i + 1])
        last = i == len(edges) - 2
        mask = (ma >= lo) & ((ma <= hi) if last else (ma < hi))
        out.append(Bin(f"[{lo:.2f}, {hi:.2f}{']' if last else ')'}", lo, hi, mask))
    return out


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
    out = {b.label: _group(values[b.mask], name) for b in bin_masks(max_attention, edges)}
    out["all"] = _group(values, name)
    return out


def bin_quartiles(values: torch.Tensor | Sequence[float], max_attention: torch.Tensor | Sequence[float],
                  edges: tuple[float, ...] = MAX_ATTENTION_BINS) -> list[dict[str, float | int | str]]:
    """``values`` grouped by the bin of ``max_attention`` (1-D tensors or sequences of floats of one length; bins
    as :func:`bin_masks`), one dict per bin over its finite values: ``{"bin": label, "lo", "hi", "n", "mean", "q1",
    "median", "q3"}`` (quartiles by linear interpolation, ``torch.quantile``; NaN for an empty bin). The numbers of
    Jain & Wallace's box and violin plots (median ΔTVD under permutation, Wiegreffe & Pinter's seed JSD)."""
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    m = torch.as_tensor(max_attention, dtype=torch.float64).reshape(-1)
    if v.shape != m.shape:
        raise ValueError(f"values ({v.numel()}) and max_attention ({m.numel()}) differ in length")
    out: list[dict[str, float | int | str]] = []
    for b in bin_masks(m, edges):
        x = v[b.mask & torch.isfinite(v)]
        n = int(x.numel())
        q = x.quantile(torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist() if n else [math.nan] * 3
        out.append({"bin": b.label, "lo": b.lo, "hi": b.hi, "n": n, "mean": float(x.mean()) if n else math.nan,
                    "q1": q[0], "median": q[1], "q3": q[2]})
    return out


def _group(v: torch.Tensor, name: str) -> dict[str, float]:
    v = v[torch.isfinite(v)]
    n = int(v.numel())
    return {
        "n": n,
        f"{name}_mean": float(v.mean()) if n else math.nan,
        f"{name}_median": float(v.quantile(0.5)) if n else math.nan,
    }
