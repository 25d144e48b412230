"""The per-example records the runner itself writes, before any evaluator adds its own.

Every example of ``results.json`` is a dict:

* :func:`base_records`: ``index`` (in the texts given), ``text``, ``label`` (None without labels), ``prediction``,
  ``probability`` (of the predicted class), ``probs``, ``n_tokens`` (items: real, non-special tokens), ``tokens``
  (their strings), ``correct`` (with labels);
* :func:`add_rationale`: ``rationale``, the indices among the items of the tokens of the known rationale's words;
* :func:`add_method_scores`: ``scores[method]``, the method's score of every item, and, with a rationale,
  ``rationale_precision[method]`` (:func:`precision_at_k`);
* then every evaluator's records at the paths it yields (:class:`attnfaith.study.registry.EvaluatorSpec`).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from attnfaith.results import json_number, json_numbers

__all__ = ["base_records", "gold_mask", "add_rationale", "add_method_scores", "precision_at_k", "item_positions"]


def item_positions(mask_row: torch.Tensor) -> list[int]:
    """The positions of the items of one example (``mask_row``: its ``[T]`` item mask)."""
    return mask_row.nonzero().flatten().tolist()


def base_records(indices: Sequence[int], texts: Sequence[str], labels: Sequence[int] | None, probs: torch.Tensor,
                 items: torch.Tensor, tokens: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """One record per example of a chunk (see the module docstring); ``probs``: ``[B, C]`` output distribution,
    ``items``: ``[B, T]`` item mask (CPU), ``tokens``: the token strings of every position."""
    pred = probs.argmax(-1)
    out = []
    for b in range(len(indices)):
        pos = item_positions(items[b])
        rec: dict[str, Any] = {
            "index": int(indices[b]),
            "text": texts[b],
            "label": None if labels is None else int(labels[b]),
            "prediction": int(pred[b]),
            "probability": json_number(probs[b, pred[b]]),
            "probs": json_numbers(probs[b]),
            "n_tokens": len(pos),
            "tokens": [tokens[b][p] for p in pos],
        }
        if labels is not None:
            rec["correct"] = bool(int(labels[b]) == int(pred[b]))
        out.append(rec)
    return out


def gold_mask(items: torch.Tensor, word_ids: Sequence[Sequence[int | None]],
              rationales: Sequence[Sequence[int]]) -> torch.Tensor:
    """``[B, T]`` bool: the items whose token comes from a word of the example's rationale (word indices)."""
    gold = torch.zeros_like(items)
    for b in range(items.shape[0]):
        words = set(int(w) for w in rationales[b])
        for p in range(items.shape[1]):
            w = word_ids[b][p] if p < len(word_ids[b]) else None
            if w is not None and w in words and bool(items[b, p]):
                gold[b, p] = True
    return gold


def add_rationale(examples: list[dict[str, Any]], items: torch.Tensor, gold: torch.Tensor) -> None:
    """Store ``rationale`` (indices among the items of the gold tokens) in every record."""
    for b, rec in enumerate(examples):
        rec["rationale"] = [i for i, p in enumerate(item_positions(items[b])) if bool(gold[b, p])]


def precision_at_k(scores: torch.Tensor, items: torch.Tensor, gold: torch.Tensor) -> float | None:
    """Share of the ``k = |gold|`` top-scored items (ties: lower position) that are gold; None without gold."""
    from attnfaith.metrics import topk_mask

    k = int((gold & items).sum())
    if k == 0:
        return None
    top = topk_mask(scores[None].float(), k, items[None])[0]
    return float((top & gold).sum()) / k


def add_method_scores(examples: list[dict[str, Any]], method: str, scores: torch.Tensor, items: torch.Tensor,
                      gold: torch.Tensor | None) -> None:
    """Store ``scores[method]`` (the item scores, CPU ``[B, T]`` ``scores``) and, with ``gold``,
    ``rationale_precision[method]`` in every record."""
    for b, rec in enumerate(examples):
        pos = item_positions(items[b])
        rec.setdefault("scores", {})[method] = json_numbers(scores[b, pos])
        if gold is not None:
            rec.setdefault("rationale_precision", {})[method] = precision_at_k(scores[b], items[b], gold[b])
