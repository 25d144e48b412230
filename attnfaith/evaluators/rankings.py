"""What the erasure evaluators accept as ``attributions``, turned into ranking scores ``[B, T]``.

``attributions`` may be

* a tensor ``[B, T]`` (or ``[B, T, D]``, summed over ``D``): used as given;
* an attnfaith attribution (``attribute_batch``) or any object with Captum's ``.attribute`` (``IntegratedGradients``,
  ``LayerIntegratedGradients``, ``Saliency``, ``Lime``...): run on the inputs for ``target``
  (:func:`attnfaith.evaluators._base.attribution_scores`);
* one of the names of :data:`RANKINGS`, Serrano & Smith's (2019) rankings (``attn-tests``, ``test_model.py``):

  ``"attention"``
      the attention weights of the evaluator's layer(s) (:class:`attnfaith.AttentionAttribution`; heads: the
      evaluator's ``heads``, mean over them; several layers: mean over the layers).
  ``"gradient"``
      ``∂p/∂α`` (signed), p the probability of ``target`` (default the predicted class: Serrano & Smith's ``p_max``,
      ``exp_highest_val_over_sum_exp_all_vals``), :class:`attnfaith.AttentionGradient`.
  ``"attention_x_gradient"``
      ``α · ∂p/∂α`` (Serrano & Smith's "grad×attn"), :class:`attnfaith.AttentionXGradient`.
  ``"random"``
      ``n_random`` (default 5, Serrano & Smith's ``num_rand_samples_to_take``) seeded random orders of the items:
      i.i.d. ``U[0, 1)`` scores (:func:`attnfaith.metrics.random_scores`) drawn per example on the CPU from the
      example's own generator (:func:`attnfaith.seeding.example_generators`: seed
      ``example_seed(seed, example_ids[b])``): order ``r`` of row ``b`` is the ``r``-th draw of ``k_b`` values
      (``k_b`` = the row's items, in position order), then moved to the device. So the orders of an example do not
      depend on its batch-mates, the chunking, the padding or the device. How an evaluator averages over the
      orders is documented with it.

Which query row the attention-based names read (``query="auto"``, :func:`attnfaith.evaluators.selection.auto_query`):
the row of the token the classifier reads, i.e. ``"last"`` (the last real token) when a chosen layer is causal or
cross-attention (decoder-only and encoder–decoder classifiers), else ``"cls"`` (the first real token). Single-query attention (``[B, T]``, as in the
additive attention of the reference models) has one row and ignores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from attnfaith._inputs import Batch, call_model, check_target, resolve_target
from attnfaith.attr.attention import AttentionAttribution, AttentionGradient, AttentionXGradient
from attnfaith.evaluators._base import attribution_scores
from attnfaith.metrics import random_scores
from attnfaith.seeding import check_example_ids, example_generators

__all__ = ["RANKINGS", "Ranking", "resolve_ranking", "ranking_label", "heads_for_reduction", "check_n_random"]

#: the ranking names accepted as ``attributions``
RANKINGS = ("attention", "gradient", "attention_x_gradient", "random")

_CLASSES = {"attention": AttentionAttribution, "gradient": AttentionGradient,
            "attention_x_gradient": AttentionXGradient}


@dataclass
class Ranking:
    """Resolved ranking scores.

    Attributes:
        name: a label for reports (the ranking name, or the attribution's class name).
        scores: one ``[B, T]`` float tensor per order (one order, except ``"random"``: ``n_random``).
        random: True for the ``"random"`` ranking.
    """

    name: str
    scores: list[torch.Tensor]
    random: bool = False


def check_n_random(n_random: Any) -> int:
    """``n_random`` (the number of seeded random orders of the ``"random"`` ranking) if it is a positive int;
    ``ValueError`` naming it otherwise."""
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 1:
        raise ValueError(f"n_random must be a positive int, got {n_random!r}")
    return n_random


def ranking_label(attributions: Any) -> str:
    """A short label for ``attributions`` (its name, ``"tensor"`` or the class name of the attribution object)."""
    if isinstance(attributions, str):
        return attributions
    if isinstance(attributions, torch.Tensor):
        return "tensor"
    return type(attributions).__name__


def heads_for_reduction(heads: Any) -> Any:
    """The evaluator's ``heads`` (None = all) as the ``heads`` argument of the attention attributions."""
    if heads is None:
        return "mean"
    return heads if isinstance(heads, int) else list(heads)


def resolve_ranking(
    attributions: Any,
    model: nn.Module,
    batch: Batch,
    target: Any,
    *,
    layers: Sequence[int] | None = None,
    heads: Any = None,
    query: Any = "cls",
    n_random: int = 5,
    seed: int = 0,
    name: str = "attributions",
    example_ids: Any = None,
) -> Ranking:
    """Resolve ``attributions`` (see the module docstring) to :class:`Ranking` scores for ``batch``.

    ``seed`` and ``example_ids`` (the rows' global example ids, default ``0..B-1``): the ``"random"`` ranking's
    per-example generators.

    ``layers`` (resolved, non-negative layer indices) is needed for the attention-based names only. ``target`` is
    passed to the attribution (None: the predicted class). ``ValueError`` naming ``name`` for an unknown name, a
    wrong shape or NaN/inf at a scored position.
    """
    check_target(target)
    check_example_ids(example_ids, batch.size)
    if isinstance(attributions, str):
        key = attributions
        if key not in RANKINGS:
            raise ValueError(
                f"{name} must be a [B, T] tensor, an attribution object with .attribute, or one of {RANKINGS}; "
                f"got {attributions!r}"
            )
        if key == "random":
            gens = example_generators(int(seed), example_ids, batch.size)
            items_cpu = batch.items.detach().to("cpu")
            scores = [random_scores(items_cpu, generator=gens).to(batch.device) for _ in range(int(n_random))]
            return Ranking("random", scores, random=True)
        if not layers:
            raise ValueError(f"{name}={key!r} needs at least one attention layer")
        cls = _CLASSES[key]
        total = None
        for layer in layers:
            method = cls(model, layer=int(layer), heads=heads_for_reduction(heads), query=query)
            s = method.attribute_batch(batch, target)
            total = s if total is None else total + s
        scores = total / len(layers)
        scores = attribution_scores(scores, model, batch, target, name=name)
        return Ranking(key, [scores])
    if not isinstance(attributions, torch.Tensor):
        # Captum needs the class explicitly: None → the predicted class, an int → that class for every row
        with torch.no_grad():
            target = resolve_target(target, call_model(model, batch))
    scores = attribution_scores(attributions, model, batch, target, name=name)
    return Ranking(ranking_label(attributions), [scores])
