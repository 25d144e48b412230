"""Normalised AOPC (Edin et al. 2024, "Normalized AOPC: Fixing Misleading Faithfulness Metrics for Feature
Attribution Explainability"): the AOPC of a ranking rescaled by the lowest and highest AOPC that any order of the
example's items reaches on this model, so that values are comparable across models and examples.

Per example with ``n`` items, originally predicted class ``ŷ`` and ``p = p(ŷ | x)``; ``x_S`` is ``x`` with the items
of ``S`` erased (``erase="mask"``, the default and Edin et al.'s choice: the mask token, else padding; ``"pad"``,
``"delete"`` or an int id):

* an order ``π`` of the items has ``AOPC(π) = 1/n Σ_{k=1}^{n} (p − p(ŷ | x_{π_1..π_k}))`` (every removal step; the
  last one removes every item; :func:`attnfaith.metrics.curve_aopc`);
* ``aopc_comp``: the AOPC of the ranking's descending order (most important first; comprehensiveness-style);
  ``aopc_suff``: of its ascending order (least important first; sufficiency-style; ties: the lower position first
  in both);
* ``lower`` / ``upper``: the lowest / highest AOPC over all ``n!`` orders. **Exact** for ``n <= exact_max_items``
  (default 10, Edin et al.'s limit of 12 tokens with [CLS] and [SEP]): all ``2^n − 1`` subsets run once and the best
  chains are found by dynamic programming over the subsets (:func:`attnfaith.metrics.exact_aopc_bounds`), the same
  maximum as enumerating every order. **Beam search** above (``beam_size``, default 5 as Edin et al.'s code): step
  ``k`` extends each of the ``beam_size`` best partial orders by every remaining item and keeps the ``beam_size``
  with the highest (for ``upper``) or lowest (for ``lower``) cumulative drop; the beam's bounds are inside the exact
  ones (``lower`` may be too high, ``upper`` too low), and ``exact`` says which an example got. A beam can miss the
  best order entirely when single removals do not move the output (redundant evidence: any one of three markers
  keeps the prediction), so the bounds a ranking is normalised by are widened to contain its own two orders
  (``lower = min(lower, aopc_comp, aopc_suff)``, ``upper = max(...)``; for exact bounds this changes nothing beyond
  float rounding); :meth:`AOPCBounds.widened` widens them by several rankings' orders at once and
  :meth:`NormalizedAOPCResult.renormalized` re-expresses a result with such shared bounds (the study does this, so
  every method is normalised by the same bounds);
* ``naopc_comp = (aopc_comp − lower) / (upper − lower)`` (1: the best order; higher is more faithful) and
  ``naopc_suff = (aopc_suff − lower) / (upper − lower)`` (lower is more faithful); NaN when ``upper == lower``
  (one item).

The bounds do not depend on the ranking: :meth:`NormalizedAOPC.bounds` computes them once and ``evaluate(...,
bounds=...)`` reuses them for every ranking. All forwards are batched over the examples (one engine call per beam
step; subsets deduplicated per example); :func:`attnfaith.plain_loops.plain_aopc_bounds` is the plain-loop reference.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Sequence

import torch
from torch import nn

from attnfaith._inputs import Batch
from attnfaith._state import model_guard
from attnfaith.evaluators._base import Evaluator, check_items
from attnfaith.evaluators._topk import ErasedForwards, item_ranks
from attnfaith.evaluators.rankings import check_n_random, resolve_ranking
from attnfaith.evaluators.result import Result
from attnfaith.evaluators.selection import check_heads, check_layers, check_query, resolve_attention_layers
from attnfaith.metrics.eraser import curve_aopc, exact_aopc_bounds, normalized_aopc
from attnfaith.perturb import check_erase, erase_id
from attnfaith.results import fmt_number, markdown_table
from attnfaith.seeding import check_seed

__all__ = ["NormalizedAOPC", "NormalizedAOPCResult", "AOPCBounds"]


@dataclass
class AOPCBounds:
    """The lowest and highest AOPC over the orders of each example's items (``[B]`` each), whether they are exact
    (``[B]`` bool), the predicted class and its probability (``[B]``), and the variants run to find them."""

    lower: torch.Tensor
    upper: torch.Tensor
    exact: torch.Tensor
    prediction: torch.Tensor
    probability: torch.Tensor
    n_variants: int = 0

    def widened(self, results: Sequence["NormalizedAOPCResult"]) -> "AOPCBounds":
        """These bounds widened to contain the AOPC of every order of ``results`` (on the same examples): each is
        an order of the items, so the true bounds contain it."""
        lower, upper = self.lower.clone(), self.upper.clone()
        for r in results:
            for a in (r.aopc_comp, r.aopc_suff):
                a = a.to(lower.device)
                lower = torch.fmin(lower, a)
                upper = torch.fmax(upper, a)
        return dataclasses.replace(self, lower=lower, upper=upper)


@dataclass
class NormalizedAOPCResult(Result):
    """Normalised AOPC of one ranking (see :mod:`attnfaith.evaluators.normalized_aopc`); per-example ``[B]``
    tensors: ``n_items``, ``prediction``, ``probability``, ``aopc_comp``, ``aopc_suff``, ``lower``, ``upper``,
    ``exact`` (bool), ``naopc_comp``, ``naopc_suff``; ``curve_comp`` / ``curve_suff`` ``[B, T+1]`` the probability of
    the predicted class after ``k`` removals (mean over orders); ``scores``, ``items`` ``[B, T]``."""

    layout: ClassVar[dict[str, str]] = {
        "n_items": "row", "prediction": "row", "probability": "row", "aopc_comp": "row", "aopc_suff": "row",
        "lower": "row", "upper": "row", "exact": "row", "naopc_comp": "row", "naopc_suff": "row",
        "curve_comp": "step", "curve_suff": "step", "scores": "token", "items": "token",
    }

    method: str
    erase: Any
    beam_size: int
    exact_max_items: int
    n_items: torch.Tensor
    prediction: torch.Tensor
    probability: torch.Tensor
    aopc_comp: torch.Tensor
    aopc_suff: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    exact: torch.Tensor
    naopc_comp: torch.Tensor
    naopc_suff: torch.Tensor
    curve_comp: torch.Tensor
    curve_suff: torch.Tensor
    scores: torch.Tensor | None
    items: torch.Tensor
    order_scores: list[torch.Tensor] = field(default_factory=list, repr=False)

    def renormalized(self, bounds: AOPCBounds) -> "NormalizedAOPCResult":
        """A copy normalised by ``bounds`` (e.g. :meth:`AOPCBounds.widened` over several rankings)."""
        lo, hi = bounds.lower.to(self.aopc_comp.device), bounds.upper.to(self.aopc_comp.device)
        return dataclasses.replace(self, lower=lo, upper=hi, naopc_comp=normalized_aopc(self.aopc_comp, lo, hi),
                                   naopc_suff=normalized_aopc(self.aopc_suff, lo, hi))

    def summary(self) -> dict[str, Any]:
        """Means over the examples (NaN left out) of the raw and normalised AOPCs and of the bounds, and the share
        of examples with exact bounds."""
        def mean(t: torch.Tensor) -> float:
            t = t.detach().double().cpu()
            t = t[~torch.isnan(t)]
            return float(t.mean()) if t.numel() else float("nan")

        return {"method": self.method, "erase": self.erase, "n_examples": len(self),
                "mean_aopc_comp": mean(self.aopc_comp), "mean_aopc_suff": mean(self.aopc_suff),
                "mean_naopc_comp": mean(self.naopc_comp), "mean_naopc_suff": mean(self.naopc_suff),
                "mean_lower": mean(self.lower), "mean_upper": mean(self.upper),
                "exact_share": mean(self.exact.double())}

    def to_markdown(self) -> str:
        s = self.summary()
        return "**normalised AOPC**\n\n" + markdown_table(
            ("ranking", "AOPC comp", "NAOPC comp", "AOPC suff", "NAOPC suff", "lower", "upper", "exact", "examples"),
            [[s["method"], *(fmt_number(s[k]) for k in ("mean_aopc_comp", "mean_naopc_comp", "mean_aopc_suff",
                                                        "mean_naopc_suff", "mean_lower", "mean_upper",
                                                        "exact_share")), s["n_examples"]]])


def _item_positions(items: torch.Tensor) -> torch.Tensor:
    """``[B, T]``: the positions of each row's items first (in position order), then the others."""
    T = items.shape[1]
    pos = torch.arange(T, device=items.device).expand_as(items)
    return torch.sort(torch.where(items, pos, pos + T), dim=-1).values % T


class NormalizedAOPC(Evaluator):
    """Normalised AOPC (Edin et al. 2024) for any ranking; see :mod:`attnfaith.evaluators.normalized_aopc`.

    Args:
        model: a HuggingFace model or a custom model.
        erase: ``"mask"`` (default), ``"pad"``, ``"delete"`` or an int id.
        exact_max_items: examples with at most this many items get exact bounds (``2^n − 1`` variants; at most 16).
        beam_size: the beam of the approximate bounds above it.
        layer, heads, query, modules, n_random, seed: what the ranking names read; the random orders.
        max_examples_per_batch, memory_budget, dtype: as :class:`attnfaith.ErasureFlip`.
    """

    def __init__(self, model: nn.Module, *, erase: Any = "mask", exact_max_items: int = 10, beam_size: int = 5,
                 layer: Any = -1, heads: Any = None, n_random: int = 5, seed: int = 0, query: Any = "auto",
                 modules: Sequence[str] | None = None, max_examples_per_batch: int | None = None,
                 memory_budget: int | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(model, max_examples_per_batch=max_examples_per_batch, memory_budget=memory_budget)
        self.erase = check_erase(model, erase)
        for arg, value, hi in (("exact_max_items", exact_max_items, 16), ("beam_size", beam_size, None)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if hi else 1) or (hi and value > hi):
                raise ValueError(f"{arg} must be an int in {0 if hi else 1}..{hi or 'inf'}, got {value!r}")
        check_n_random(n_random)
        self.exact_max_items, self.beam_size = exact_max_items, beam_size
        self.layer = check_layers(layer, "layer")
        self.heads = check_heads(heads, "heads")
        self.n_random, self.seed = n_random, check_seed(seed)
        self.query = check_query(query)
        self.modules = list(modules) if modules is not None else None
        self.dtype = dtype

    # ------------------------------------------------------------------------------------------------ public API
    def bounds(self, inputs: Any, *, additional_forward_args: Any = None, max_examples_per_batch: int | None = None,
               mask: torch.Tensor | None = None, tokenizer: Any = None,
               special_ids: Iterable[int] | None = None) -> AOPCBounds:
        """The AOPC bounds of every example (they do not depend on any ranking)."""
        batch = self.prepare(inputs, additional_forward_args, mask=mask, tokenizer=tokenizer, special_ids=special_ids)
        check_items(batch, "inputs")
        with model_guard(self.model), torch.inference_mode(), self._forwards(batch, max_examples_per_batch,
                                                                             tokenizer) as fw:
            return self._bounds(fw, batch, fw.original())

    def evaluate(self, inputs: Any, attributions: Any = None, *, target: Any = None,
                 additional_forward_args: Any = None, max_examples_per_batch: int | None = None,
                 mask: torch.Tensor | None = None, tokenizer: Any = None, special_ids: Iterable[int] | None = None,
                 name: str | None = None, example_ids: Any = None,
                 bounds: AOPCBounds | None = None) -> NormalizedAOPCResult:
        """Raw and normalised AOPC of one ranking (arguments as :meth:`attnfaith.Comprehensiveness.evaluate`);
        ``bounds``: from :meth:`bounds` on the same inputs (None: computed here)."""
        if attributions is None:
            attributions = "attention"
        batch = self.prepare(inputs, additional_forward_args, mask=mask, tokenizer=tokenizer, special_ids=special_ids)
        check_items(batch, "inputs")
        if bounds is not None and (not isinstance(bounds, AOPCBounds) or bounds.lower.shape[0] != batch.size):
            raise ValueError(f"bounds must be the AOPCBounds of these {batch.size} examples (NormalizedAOPC.bounds)")
        with model_guard(self.model):
            needs = isinstance(attributions, str) and attributions != "random"
            layers, query = (resolve_attention_layers(self.model, batch, self.layer, self.heads, self.modules,
                                                      self.query) if needs else (None, "cls"))
            ranking = resolve_ranking(attributions, self.model, batch, target, layers=layers, heads=self.heads,
                                      query=query, n_random=self.n_random, seed=self.seed, example_ids=example_ids)
            with torch.inference_mode(), self._forwards(batch, max_examples_per_batch, tokenizer) as fw:
                p_orig = fw.original()
                if bounds is None:
                    bounds = self._bounds(fw, batch, p_orig)
                pred = p_orig.argmax(-1)
                p0 = p_orig.gather(1, pred[:, None]).squeeze(1).float()
                curves = {}
                for key, sign in (("comp", 1.0), ("suff", -1.0)):
                    curves[key] = torch.stack([self._curve(fw, batch, sign * s, pred, p0) for s in ranking.scores])
        n = batch.n_items
        out = {}
        for key, c in curves.items():  # c: [R, B, T+1]
            drops = p0[None, :, None] - c[..., 1:]
            aopc = torch.stack([curve_aopc(d, n) for d in drops]).mean(0)
            out[key] = (aopc, c.mean(0))
        # the ranking's own orders are witnesses: the bounds contain them (a beam may miss them)
        lo = torch.fmin(torch.fmin(bounds.lower.to(p0.device), out["comp"][0]), out["suff"][0])
        hi = torch.fmax(torch.fmax(bounds.upper.to(p0.device), out["comp"][0]), out["suff"][0])
        return NormalizedAOPCResult(
            method=name or ranking.name, erase=self.erase, beam_size=self.beam_size,
            exact_max_items=self.exact_max_items, n_items=n, prediction=pred, probability=p0,
            aopc_comp=out["comp"][0], aopc_suff=out["suff"][0], lower=lo, upper=hi, exact=bounds.exact.to(p0.device),
            naopc_comp=normalized_aopc(out["comp"][0], lo, hi), naopc_suff=normalized_aopc(out["suff"][0], lo, hi),
            curve_comp=out["comp"][1], curve_suff=out["suff"][1],
            scores=None if ranking.random else ranking.scores[0], items=batch.items,
            order_scores=list(ranking.scores))

    # ------------------------------------------------------------------------------------------------ internals
    def _forwards(self, batch: Batch, max_examples_per_batch, tokenizer) -> ErasedForwards:
        return ErasedForwards(self.model, batch, self.runner_for(max_examples_per_batch),
                              replacement=erase_id(self.model, self.erase, tokenizer), dtype=self.dtype)

    def _curve(self, fw: ErasedForwards, batch: Batch, scores: torch.Tensor, pred, p0) -> torch.Tensor:
        """``[B, T+1]``: p(ŷ) after the top ``k`` items of ``scores`` are erased, ``k = 0..n`` (NaN after)."""
        B, T = batch.input_ids.shape
        device = batch.device
        n = batch.n_items
        rank = item_ranks(scores, batch.items)
        n_host = n.cpu()
        b_host = torch.repeat_interleave(torch.arange(B), n_host)
        k_host = torch.arange(int(n_host.sum())) - (torch.cumsum(n_host, 0) - n_host)[b_host] + 1
        rows, k = b_host.to(device), k_host.to(device)
        erase = batch.items[rows] & (rank[rows] < k[:, None])
        probs = fw.run(rows, erase)
        curve = torch.full((B, T + 1), float("nan"), device=device)
        curve[:, 0] = p0
        if probs.numel():
            curve[rows, k] = probs.gather(1, pred[rows][:, None]).squeeze(1).float()
        return curve

    def _bounds(self, fw: ErasedForwards, batch: Batch, p_orig: torch.Tensor) -> AOPCBounds:
        B, T = batch.input_ids.shape
        device = batch.device
        pred = p_orig.argmax(-1)
        p0 = p_orig.gather(1, pred[:, None]).squeeze(1).float()
        n = batch.n_items
        n_host = n.cpu()
        lower = torch.full((B,), float("nan"), device=device)
        upper = torch.full((B,), float("nan"), device=device)
        exact = n_host <= self.exact_max_items
        pos = _item_positions(batch.items)
        count = 0
        for size in sorted(set(n_host[exact].tolist()) - {0}):
            rows_b = (exact & (n_host == size)).nonzero().flatten().to(device)
            bits = ((torch.arange(1 << size, device=device)[:, None] >> torch.arange(size, device=device)) & 1).bool()
            S = bits.shape[0] - 1  # subsets 1..2^n − 1
            rows = rows_b.repeat_interleave(S)
            onehot = torch.zeros(rows_b.numel(), size, T, dtype=torch.bool, device=device)
            onehot.scatter_(2, pos[rows_b, :size, None], True)
            erase = (bits[1:, None, :, None] & onehot[None]).any(2).transpose(0, 1).reshape(-1, T)  # [m·S, T]
            probs = fw.run(rows, erase)
            count += int(rows.numel())
            p = probs.gather(1, pred[rows][:, None]).squeeze(1).float().view(-1, S)
            drops = torch.cat([torch.zeros(p.shape[0], 1, device=device), p0[rows_b, None] - p], 1)
            lo, hi = exact_aopc_bounds(drops)
            lower[rows_b], upper[rows_b] = lo, hi
        beam = (~exact & (n_host > 0)).nonzero().flatten()
        if beam.numel():
            lo, hi, c = self._beam_bounds(fw, batch, beam.to(device), pred, p0)
            lower[beam.to(device)], upper[beam.to(device)] = lo, hi
            count += c
        return AOPCBounds(lower=lower, upper=upper, exact=exact.to(device), prediction=pred, probability=p0,
                          n_variants=count)

    def _beam_bounds(self, fw: ErasedForwards, batch: Batch, rows_b: torch.Tensor, pred, p0):
        """Beam search over the removal orders of the examples ``rows_b`` (see the module docstring): ``(lower,
        upper, variants run)``."""
        T = batch.length
        device = batch.device
        W = self.beam_size
        m = rows_b.numel()
        items = batch.items[rows_b]  # [m, T]
        n = items.sum(-1)
        n_max = int(n.max())
        count = 0
        # two searches side by side: index 0 maximises (upper), 1 minimises (lower)
        sets = torch.zeros(2, m, 1, T, dtype=torch.bool, device=device)
        cum = torch.zeros(2, m, 1, device=device, dtype=torch.float64)
        final = torch.full((2, m), float("nan"), dtype=torch.float64, device=device)
        alive = torch.ones(2, m, 1, dtype=torch.bool, device=device)
        for step in range(1, n_max + 1):
            w = sets.shape[2]
            # (search, example, member, item): the item can join the member's set
            ok = items[None, :, None, :] & ~sets & alive[..., None] & (step <= n)[None, :, None, None]
            idx = ok.nonzero(as_tuple=True)
            flat = sets[idx[0], idx[1], idx[2]].clone()  # [N, T]
            flat[torch.arange(flat.shape[0], device=device), idx[3]] = True
            # every distinct (example, set) runs once
            key = torch.cat([idx[1][:, None], flat.long()], 1)
            uniq, inverse = torch.unique(key, dim=0, return_inverse=True)
            src = rows_b[uniq[:, 0]]
            probs = fw.run(src, uniq[:, 1:].bool())
            count += int(uniq.shape[0])
            drop = p0[src] - probs.gather(1, pred[src][:, None]).squeeze(1).float()
            score = torch.full((2, m, w, T), float("nan"), dtype=torch.float64, device=device)
            score[idx] = cum[idx[0], idx[1], idx[2]] + drop[inverse].double()
            # keep the W best candidates of each search per example (stable sorts: ties keep the lower
            # (member, item) index)
            flat_score = score.view(2, m, w * T)
            nan = torch.isnan(flat_score)
            up = torch.sort(flat_score[0].masked_fill(nan[0], -float("inf")), dim=-1, descending=True,
                            stable=True).indices
            down = torch.sort(flat_score[1].masked_fill(nan[1], float("inf")), dim=-1, stable=True).indices
            keep = torch.stack([up, down])[..., :W]  # [2, m, W]
            kept = flat_score.gather(-1, keep)
            member, item = keep // T, keep % T
            sets = sets.gather(2, member[..., None].expand(-1, -1, -1, T)).clone()
            sets.scatter_(3, item[..., None], True)
            alive = ~torch.isnan(kept)
            cum = torch.nan_to_num(kept, nan=0.0)
            done = step == n  # [m]
            final[:, done] = kept[:, done, 0]
        nf = n.to(torch.float64)
        lower = (final[1] / nf).float()
        upper = (final[0] / nf).float()
        return lower, upper, count
