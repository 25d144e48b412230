"""What every attnfaith attribution shares: Captum's ``attribute`` interface over one normalised batch."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import nn

from attnfaith._inputs import Batch, prepare_batch
from attnfaith.attention.model_facts import model_device

__all__ = ["TokenAttribution", "reduce_attention", "validate_heads", "validate_query"]

_HEAD_OPTIONS = ("mean", "max")
_QUERY_OPTIONS = ("cls", "last", "mean")


class TokenAttribution:
    """Base class: ``Cls(model, ...).attribute(inputs, target=None, additional_forward_args=None) -> [B, T]``.

    One score per input token, 0 on padding. ``inputs`` follows Captum (ids tensor, the attention mask in
    ``additional_forward_args``) or HuggingFace (a ``BatchEncoding``/mapping); see :mod:`attnfaith._inputs`.
    ``target=None`` explains the model's predicted class.
    """

    #: Captum's flag: the scores already include a multiplication by the inputs
    multiplies_by_inputs = False

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.forward_func = model  # Captum's attribute name

    def has_convergence_delta(self) -> bool:
        return False

    def _batch(self, inputs: Any, additional_forward_args: Any, **kwargs: Any) -> Batch:
        device = model_device(self.model, default=None)
        return prepare_batch(self.model, inputs, additional_forward_args, device=device, **kwargs)

    def attribute(
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        batch = self._batch(inputs, additional_forward_args, **_batch_kwargs(kwargs))
        return self.attribute_batch(batch, target, **kwargs)

    def attribute_batch(self, batch: Batch, target: Any = None, **kwargs: Any) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


def _batch_kwargs(kwargs: dict) -> dict:
    """Pop the input-normalisation options (``mask``, ``tokenizer``, ``special_ids``) out of ``kwargs``."""
    return {k: kwargs.pop(k) for k in ("mask", "tokenizer", "special_ids") if k in kwargs}


def validate_heads(heads: Any) -> Any:
    if isinstance(heads, str):
        if heads not in _HEAD_OPTIONS:
            raise ValueError(f"heads must be 'mean', 'max', an int or a list of ints, got {heads!r}")
        return heads
    if isinstance(heads, bool):
        raise TypeError("heads must be 'mean', 'max', an int or a list of ints")
    if isinstance(heads, int):
        return heads
    if isinstance(heads, Iterable):
        seq = list(heads)
        if not seq or not all(isinstance(h, int) and not isinstance(h, bool) for h in seq):
            raise ValueError(f"heads must be 'mean', 'max', an int or a non-empty list of ints, got {heads!r}")
        return seq
    raise TypeError(f"heads must be 'mean', 'max', an int or a list of ints, got {type(heads).__name__}")


def validate_query(query: Any) -> Any:
    if isinstance(query, str):
        if query not in _QUERY_OPTIONS:
            raise ValueError(f"query must be 'cls', 'last', 'mean' or an int, got {query!r}")
        return query
    if isinstance(query, bool) or not isinstance(query, int):
        raise TypeError(f"query must be 'cls', 'last', 'mean' or an int, got {type(query).__name__}")
    return query


def fuse_heads(att: torch.Tensor, heads: Any) -> torch.Tensor:
    """``[B, H, Tq, Tk]`` → ``[B, Tq, Tk]``: the mean (``"mean"``), maximum (``"max"``) or minimum (``"min"``) over
    the heads, or the mean over the heads ``heads`` (an int or a sequence of ints, negative from the end).
    ``ValueError`` for a head outside ``-H..H-1``."""
    H = att.shape[1]
    if heads == "mean":
        return att.mean(dim=1)
    if heads == "max":
        return att.max(dim=1).values
    if heads == "min":
        return att.min(dim=1).values
    idx = [heads] if isinstance(heads, int) else list(heads)
    for h in idx:
        if not -H <= h < H:
            raise ValueError(f"heads: head {h} is out of range for a layer with {H} heads")
    return att[:, idx].mean(dim=1)


def select_query(rows: torch.Tensor, query: Any, attention_mask: torch.Tensor) -> torch.Tensor:
    """``rows`` ``[B, Tq, Tk]`` → ``[B, Tk]`` by the ``query`` rule (see :class:`AttentionAttribution`)."""
    B, Tq, Tk = rows.shape
    if Tq == 1:
        return rows[:, 0]
    if query == "cls":
        # the first real token: position 0 for right padding, the first non-pad position for left padding
        first = (attention_mask[:, :Tq] != 0).long().argmax(dim=-1)
        return rows[torch.arange(B, device=rows.device), first]
    if query == "last":
        pos = torch.arange(Tq, device=rows.device).expand(B, Tq)
        last = torch.where(attention_mask[:, :Tq] != 0, pos, torch.zeros_like(pos)).max(dim=-1).values
        return rows[torch.arange(B, device=rows.device), last]
    if query == "mean":
        qm = (attention_mask[:, :Tq] != 0).to(rows.dtype)
        return (rows * qm[:, :, None]).sum(dim=1) / qm.sum(dim=1, keepdim=True).clamp_min(1)
    if not -Tq <= query < Tq:
        raise ValueError(f"query: row {query} is out of range for {Tq} query positions")
    return rows[:, query]


def reduce_attention(att: torch.Tensor, heads: Any, query: Any, attention_mask: torch.Tensor) -> torch.Tensor:
    """Reduce ``[B, H, Tq, Tk]`` attention (or its gradient) to one score per key token ``[B, Tk]``, 0 on padding.

    ``heads``: "mean"/"max" over heads, an int, or a list (mean over those). ``query``: "cls" (the first real
    token's row), "last" (the last real token's row), "mean" (mean over the real query rows) or an int.
    When the keys are the input tokens the result is masked with ``attention_mask``.
    """
    scores = select_query(fuse_heads(att, heads), query, attention_mask)
    if scores.shape[-1] == attention_mask.shape[-1]:
        scores = scores * (attention_mask != 0).to(scores.dtype)
    return scores
