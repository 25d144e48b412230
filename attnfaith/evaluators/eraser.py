"""ERASER's comprehensiveness and sufficiency (DeYoung et al. 2020, "ERASER: A Benchmark to Evaluate Rationalized NLP
Models", section 4.2) for any ranking of the input tokens.

Per example ``b`` with ``n_b`` items (``batch.items``: the real, non-special tokens, or the caller's ``mask``), the
originally predicted class ``ŷ`` and its probability ``p = p(ŷ | x)``, and per bin ``f`` in ``fractions`` (default
:data:`attnfaith.metrics.ERASER_FRACTIONS`: 1, 5, 10, 20, 50 %):

* ``k = ⌈f · n_b⌉`` items (:func:`attnfaith.metrics.top_fraction_sizes`; ``rounding="floor"`` gives ferret's
  ``int(f · n)``, and a bin of 0 items is then NaN and left out), the top ``k`` in descending score order, ties
  broken by the lower position (:func:`attnfaith.metrics.descending_order`);
* **comprehensiveness** ``= p − p(ŷ | x without those k items)`` (higher: more faithful);
* **sufficiency** ``= p − p(ŷ | x with only those k items and the special tokens)`` (lower: more faithful);
* the **AOPC** of each is the mean over the bins (ERASER's ``compute_aopc_scores``).

How an item leaves the input (``level`` / ``erase``): ``"delete"`` (default; the token leaves the sequence and the
rest closes up, Jain & Wallace's deletion, also ferret's default ``remove_tokens=True``), ``"mask"`` (the mask token,
else padding; ferret's ``remove_tokens=False``), ``"pad"`` or an int id in its place; or ``level="attention"``: its
attention weight is zeroed in the chosen layer(s) and heads and every row renormalised (Serrano & Smith's erasure,
the ``"zero"`` intervention, as :class:`attnfaith.ErasureFlip`). Probabilities may rise when items are removed, so
both values can be negative. The ``"random"`` ranking averages ``n_random`` seeded orders per example.

The variants (one per example, order and non-empty bin) run batched through
:class:`attnfaith.evaluators._topk.ErasedForwards`; :func:`attnfaith.plain_loops.plain_topk_probabilities` is the same
definition as a plain loop (one forward per variant), the tests' reference.
"""

from __future__ import annotations

import torch

from attnfaith.evaluators._topk import TopKEvaluator, TopKResult
from attnfaith.metrics.eraser import probability_drop

__all__ = ["Comprehensiveness", "Sufficiency", "TopKResult"]


class Comprehensiveness(TopKEvaluator):
    """ERASER comprehensiveness: the drop of ``p(ŷ)`` when the top-k items are removed, per bin and its AOPC (mean
    over the bins); higher is more faithful. See :mod:`attnfaith.evaluators.eraser`.

    Example::

        res = Comprehensiveness(model).evaluate(enc, attributions=scores)    # or "attention", a Captum object
        res.aopc, res.values, res.summary()["mean_aopc"]
    """

    metric = "comprehensiveness"
    keep = False

    def values(self, p_original: torch.Tensor, p_variant: torch.Tensor) -> torch.Tensor:
        return probability_drop(p_original, p_variant)


class Sufficiency(TopKEvaluator):
    """ERASER sufficiency: the drop of ``p(ŷ)`` when only the top-k items are kept (with the special tokens), per
    bin and its AOPC; lower is more faithful. See :mod:`attnfaith.evaluators.eraser`."""

    metric = "sufficiency"
    keep = True

    def values(self, p_original: torch.Tensor, p_variant: torch.Tensor) -> torch.Tensor:
        return probability_drop(p_original, p_variant)
