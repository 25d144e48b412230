"""Log-odds (Shrikumar et al. 2017, "Learning Important Features Through Propagating Activation Differences"), as the
DIG benchmark uses it (Sanyal & Ren 2021, ``calculate_log_odd``): the top-k % items replaced by a baseline id.

Per example with ``n`` items, originally predicted class ``ŷ`` and bin ``f`` (default ``fractions=(0.2,)``: DIG's
``topk=20``): ``k = ⌈f · n⌉`` top items in descending score order (ties: the lower position first) are replaced by the
mask token (``erase="mask"``, the default; else the padding id), the padding id (``"pad"``) or an int id, and

``log_odds = log p(ŷ | x') − log p(ŷ | x)`` (:func:`attnfaith.metrics.log_odds`),

negative when the replaced tokens supported the prediction: lower is more faithful. Several bins give one value each
and their mean (``aopc``). Deletion (``erase="delete"``) and the attention level are accepted as for
:class:`attnfaith.Comprehensiveness`. Differences from DIG: DIG counts ``k`` over every token of the sequence (special
tokens included) and replaces the token *embeddings* by the baseline token's embedding, position and type embeddings
left as they are — the same as replacing the id for models whose embedding is a lookup; here ``k`` counts items only.
"""

from __future__ import annotations

import torch

from attnfaith.evaluators._topk import TopKEvaluator
from attnfaith.metrics.eraser import log_odds

__all__ = ["LogOdds"]


class LogOdds(TopKEvaluator):
    """Change in the log-probability of the predicted class when the top-k % items are replaced by a baseline id
    (lower: more faithful). See :mod:`attnfaith.evaluators.log_odds`; options as
    :class:`attnfaith.Comprehensiveness`, with ``fractions=(0.2,)`` and ``erase="mask"`` by default."""

    metric = "log_odds"
    keep = False
    default_erase = "mask"
    default_fractions = (0.2,)

    def values(self, p_original: torch.Tensor, p_variant: torch.Tensor) -> torch.Tensor:
        return log_odds(p_original, p_variant)
