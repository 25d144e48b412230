"""Soft comprehensiveness and soft sufficiency (Zhao & Aletras 2023, "Incorporating Attribution Importance for
Improving Faithfulness Metrics", ACL): every token is perturbed in proportion to its importance instead of a hard
top-k cut.

Per example with items ``i`` (``batch.items``), originally predicted class ``ŷ`` and ``p = p(ŷ | x)``:

* the scores are min-max normalised over the example's items to ``s_i ∈ [0, 1]``
  (:func:`attnfaith.metrics.minmax_normalize`; the top item 1, the bottom 0; all equal → 1);
* **soft comprehensiveness**: the input embedding of every item is multiplied by ``1 − s_i`` (the important tokens
  fade out), ``x_c``; value ``p − p(ŷ | x_c)`` (higher: more faithful);
* **soft sufficiency**: the input embedding of every item is multiplied by ``s_i`` (only the important tokens stay),
  ``x_s``; value ``p − p(ŷ | x_s)`` (lower: more faithful);
* both are normalised by the fully perturbed input ``x_∅`` (every item's embedding multiplied by 0) as Carton et al.
  (2020) and Zhao & Aletras's code do (:func:`attnfaith.metrics.normalized_comprehensiveness`,
  :func:`attnfaith.metrics.normalized_sufficiency`): ``normalized`` is higher-is-better for *both* (the normalised
  sufficiency is ``max(0, (S(x_s) − S(x_∅)) / (1 − S(x_∅)))`` with ``S = 1 − max(0, drop)``).

Special tokens and padding keep their embeddings. **Which embedding is scaled**: the output of
:func:`attnfaith.attention.model_facts.input_embedding_module` — the token (word) embedding lookup, *before* position
and token-type embeddings are added and before the embedding LayerNorm: BERT / RoBERTa / ELECTRA / ALBERT / DeBERTa /
DistilBERT ``embeddings.word_embeddings``; GPT-2 ``transformer.wte`` (before ``wpe``); Llama / Qwen2 ``embed_tokens``
(rotary positions: nothing added); BART / T5 the encoder's ``embed_tokens`` (BART's includes its ``embed_scale``);
Jain & Wallace's BiLSTM its ``embedding``. Zhao & Aletras scale BERT's word embeddings the same way.

**Deliberate difference**: the paper draws a Bernoulli mask per embedding element with keep probability ``s_i``
(sufficiency) or ``1 − s_i`` (comprehensiveness); here the embedding is multiplied by that probability — the mask's
expectation — so the metric is deterministic and needs no seed. The ``"random"`` ranking averages ``n_random`` seeded
orders. All variants (two per order and example, plus ``x_∅``) run batched through
:class:`attnfaith.evaluators._topk.ErasedForwards`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Sequence

import torch
from torch import nn

from attnfaith._state import model_guard
from attnfaith.evaluators._base import Evaluator, check_items
from attnfaith.evaluators._topk import ErasedForwards
from attnfaith.evaluators.rankings import check_n_random, resolve_ranking
from attnfaith.evaluators.result import Result
from attnfaith.evaluators.selection import check_heads, check_layers, check_query, resolve_attention_layers
from attnfaith.metrics.eraser import (
    minmax_normalize, normalized_comprehensiveness, normalized_sufficiency, probability_drop,
)
from attnfaith.results import fmt_number, markdown_table
from attnfaith.seeding import check_seed

__all__ = ["SoftComprehensiveness", "SoftSufficiency", "SoftEraserResult"]


@dataclass
class SoftEraserResult(Result):
    """Soft comprehensiveness or sufficiency of one ranking (see :mod:`attnfaith.evaluators.soft_eraser`).

    Attributes:
        method, metric (``"soft_comprehensiveness"`` / ``"soft_sufficiency"``).
        n_items, prediction, probability: ``[B]`` the items, the predicted class and its probability.
        empty_probability: ``[B]`` its probability with every item's embedding zeroed.
        variant_probability: ``[B]`` its probability in the soft variant (mean over orders).
        value: ``[B]`` ``probability − variant_probability`` (mean over orders).
        normalized: ``[B]`` the normalised value (Carton et al. 2020; higher is better for both metrics).
        normalized_per_order: ``[B, R]``.
        weights: ``[B, T]`` the normalised scores ``s`` (first order); scores: ``[B, T]`` (None for random); items.
    """

    layout: ClassVar[dict[str, str]] = {
        "n_items": "row", "prediction": "row", "probability": "row", "empty_probability": "row",
        "variant_probability": "row", "value": "row", "normalized": "row", "normalized_per_order": "row",
        "weights": "token", "scores": "token", "items": "token",
    }

    method: str
    metric: str
    n_items: torch.Tensor
    prediction: torch.Tensor
    probability: torch.Tensor
    empty_probability: torch.Tensor
    variant_probability: torch.Tensor
    value: torch.Tensor
    normalized: torch.Tensor
    normalized_per_order: torch.Tensor
    weights: torch.Tensor
    scores: torch.Tensor | None
    items: torch.Tensor
    order_scores: list[torch.Tensor] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """``mean_normalized`` and ``mean_value`` over the examples."""
        def mean(t: torch.Tensor) -> float:
            t = t.detach().double().cpu()
            t = t[~torch.isnan(t)]
            return float(t.mean()) if t.numel() else float("nan")

        return {"method": self.method, "metric": self.metric, "n_examples": len(self),
                "n_orders": int(self.normalized_per_order.shape[1]),
                "mean_normalized": mean(self.normalized), "mean_value": mean(self.value)}

    def to_markdown(self) -> str:
        s = self.summary()
        return f"**{self.metric}**\n\n" + markdown_table(
            ("ranking", "normalised", "raw drop", "examples"),
            [[s["method"], fmt_number(s["mean_normalized"]), fmt_number(s["mean_value"]), s["n_examples"]]])


class _SoftEraser(Evaluator):
    """Shared by :class:`SoftComprehensiveness` and :class:`SoftSufficiency` (see the module docstring).

    Args:
        model: a HuggingFace model or a custom model with ``get_input_embeddings()``.
        n_random, seed: the ``"random"`` ranking's orders.
        layer, heads, query, modules: what the attention-based ranking names read.
        max_examples_per_batch, memory_budget, dtype: as :class:`attnfaith.ErasureFlip`.
    """

    metric: ClassVar[str] = ""

    def __init__(self, model: nn.Module, *, layer: Any = -1, heads: Any = None, n_random: int = 5, seed: int = 0,
                 query: Any = "auto", modules: Sequence[str] | None = None,
                 max_examples_per_batch: int | None = None, memory_budget: int | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(model, max_examples_per_batch=max_examples_per_batch, memory_budget=memory_budget)
        check_n_random(n_random)
        self.layer = check_layers(layer, "layer")
        self.heads = check_heads(heads, "heads")
        self.n_random, self.seed = n_random, check_seed(seed)
        self.query = check_query(query)
        self.modules = list(modules) if modules is not None else None
        self.dtype = dtype

    def _factor(self, weights: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _normalize(self, p0, pv, pe) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, inputs: Any, attributions: Any = None, *, target: Any = None,
                 additional_forward_args: Any = None, max_examples_per_batch: int | None = None,
                 mask: torch.Tensor | None = None, tokenizer: Any = None, special_ids: Iterable[int] | None = None,
                 name: str | None = None, example_ids: Any = None) -> SoftEraserResult:
        """Run the metric for one ranking (arguments as :meth:`attnfaith.Comprehensiveness.evaluate`)."""
        if attributions is None:
            attributions = "attention"
        batch = self.prepare(inputs, additional_forward_args, mask=mask, tokenizer=tokenizer, special_ids=special_ids)
        check_items(batch, "inputs")
        B = batch.size
        device = batch.device
        with model_guard(self.model):
            needs = isinstance(attributions, str) and attributions != "random"
            layers, query = (resolve_attention_layers(self.model, batch, self.layer, self.heads, self.modules,
                                                      self.query) if needs else (None, "cls"))
            ranking = resolve_ranking(attributions, self.model, batch, target, layers=layers, heads=self.heads,
                                      query=query, n_random=self.n_random, seed=self.seed, example_ids=example_ids)
            R = len(ranking.scores)
            weights = [minmax_normalize(s.float(), batch.items) for s in ranking.scores]
            items = batch.items
            ones = torch.ones(B, batch.length, device=device)
            scale = torch.cat([torch.where(items, self._factor(w), ones) for w in weights]
                              + [torch.where(items, torch.zeros_like(ones), ones)])  # [R·B + B, T]
            rows = torch.arange(B, device=device).repeat(R + 1)
            runner = self.runner_for(max_examples_per_batch)
            with torch.inference_mode(), ErasedForwards(self.model, batch, runner, dtype=self.dtype) as fw:
                p_orig = fw.original()
                probs = fw.run_scaled(rows, scale)
        pred = p_orig.argmax(-1)
        p0 = p_orig.gather(1, pred[:, None]).squeeze(1).float()
        pc = probs.gather(1, pred[rows][:, None]).squeeze(1).float()
        pv, pe = pc[: R * B].view(R, B), pc[R * B:]
        norm = torch.stack([self._normalize(p0, pv[r], pe) for r in range(R)])  # [R, B]
        return SoftEraserResult(
            method=name or ranking.name, metric=self.metric, n_items=batch.n_items, prediction=pred, probability=p0,
            empty_probability=pe, variant_probability=pv.mean(0),
            value=torch.stack([probability_drop(p0, pv[r]) for r in range(R)]).mean(0), normalized=norm.mean(0),
            normalized_per_order=norm.t().contiguous(), weights=weights[0],
            scores=None if ranking.random else ranking.scores[0], items=items, order_scores=list(ranking.scores))


class SoftComprehensiveness(_SoftEraser):
    """Soft comprehensiveness (Zhao & Aletras 2023): every item's input embedding multiplied by ``1 − s_i``;
    ``normalized`` (higher: more faithful) and the raw drop ``value``. See :mod:`attnfaith.evaluators.soft_eraser`."""

    metric = "soft_comprehensiveness"

    def _factor(self, weights: torch.Tensor) -> torch.Tensor:
        return 1.0 - weights

    def _normalize(self, p0, pv, pe) -> torch.Tensor:
        return normalized_comprehensiveness(p0, pv, pe)


class SoftSufficiency(_SoftEraser):
    """Soft sufficiency (Zhao & Aletras 2023): every item's input embedding multiplied by ``s_i``; ``normalized``
    (higher: more sufficient, i.e. more faithful) and the raw drop ``value`` (lower: more faithful). See
    :mod:`attnfaith.evaluators.soft_eraser`."""

    metric = "soft_sufficiency"

    def _factor(self, weights: torch.Tensor) -> torch.Tensor:
        return weights

    def _normalize(self, p0, pv, pe) -> torch.Tensor:
        return normalized_sufficiency(p0, pv, pe)
