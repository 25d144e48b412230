"""Attention-based token attributions: raw attention, attention rollout, attention gradient and gradient × attention.

All of them read the model's attention through :class:`attnfaith.AttentionTap` and reduce a ``[B, H, Tq, Tk]``
tensor to one score per key token with :func:`attnfaith.attr._base.reduce_attention`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from attnfaith._inputs import Batch, call_model, probs_of, resolve_target
from attnfaith._state import model_guard
from attnfaith.attention import AttentionTap
from attnfaith.attr._base import TokenAttribution, fuse_heads, reduce_attention, select_query, validate_heads, validate_query

__all__ = ["AttentionAttribution", "AttentionRollout", "AttentionGradient", "AttentionXGradient"]


def _check_layer(layer: Any) -> int:
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layer must be an int (negative counts from the last layer), got {type(layer).__name__}")
    return layer


class AttentionAttribution(TokenAttribution):
    """The attention weights of one layer as token importance.

    ``score[b, k]`` = attention of the chosen query row to key ``k`` in layer ``layer``, fused over heads.

    Args:
        model: any model the tap reaches.
        layer: attention layer in call order (``-1``: the last; for T5/BART that is the last decoder
            cross-attention, whose keys are the input tokens).
        heads: ``"mean"`` (default) or ``"max"`` over heads, an int, or a list of heads (mean over them).
        query: ``"cls"`` (default: the first real token's row, [CLS] for BERT-style models), ``"last"`` (the last
            real token's row: the classification token of decoder classifiers), ``"mean"`` (mean over the real
            query rows) or an int row. Single-query attention (additive attention, ``[B, T]``) has one row.
    """

    def __init__(self, model: nn.Module, layer: int = -1, heads: Any = "mean", query: Any = "cls") -> None:
        super().__init__(model)
        self.layer = _check_layer(layer)
        self.heads = validate_heads(heads)
        self.query = validate_query(query)

    def attribute_batch(self, batch: Batch, target: Any = None, **kwargs: Any) -> torch.Tensor:
        _no_extra(kwargs)
        with model_guard(self.model), torch.no_grad(), AttentionTap(self.model, capture=[self.layer]) as tap:
            call_model(self.model, batch)
            att = tap.attention(tap.resolve_layer(self.layer))
        return reduce_attention(att.float(), self.heads, self.query, batch.attention_mask)


class AttentionRollout(TokenAttribution):
    """Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

    For each self-attention layer ``l`` in order, ``Ã_l = rownorm(fuse_heads(A_l) + I)`` (the residual connection as
    an identity, rows renormalised); the rollout is ``R = Ã_L · Ã_{L-1} ··· Ã_1`` and the score of key token ``k``
    is ``R[q, k]`` for the chosen query row ``q``.

    Layers used: every self-attention layer over the input tokens; in an encoder–decoder model (T5, BART) the
    encoder's self-attention layers only (the decoder's self and cross attention are left out).

    Args:
        head_fusion: ``"mean"`` (default), ``"max"`` or ``"min"`` over heads.
        query: as in :class:`AttentionAttribution` (default ``"cls"``).
    """

    def __init__(self, model: nn.Module, head_fusion: str = "mean", query: Any = "cls") -> None:
        super().__init__(model)
        if head_fusion not in ("mean", "max", "min"):
            raise ValueError(f"head_fusion must be 'mean', 'max' or 'min', got {head_fusion!r}")
        self.head_fusion = head_fusion
        self.query = validate_query(query)

    def attribute_batch(self, batch: Batch, target: Any = None, **kwargs: Any) -> torch.Tensor:
        _no_extra(kwargs)
        with model_guard(self.model), torch.no_grad(), AttentionTap(self.model) as tap:
            call_model(self.model, batch)
            layers, atts = tap.layers, tap.attentions
        T = batch.length
        has_cross = any(l.kind == "cross" for l in layers)
        chosen = [
            a for l, a in zip(layers, atts)
            if l.kind == "self" and a.shape[-1] == T and a.shape[-2] == T and not (has_cross and l.causal)
        ]
        if not chosen:
            raise ValueError("model: no self-attention layer over the input tokens to roll out")
        eye = torch.eye(T, device=batch.device, dtype=torch.float64)
        rollout = eye.expand(batch.size, T, T)
        for att in chosen:
            a = fuse_heads(att.double(), self.head_fusion) + eye
            a = a / a.sum(dim=-1, keepdim=True)
            rollout = a @ rollout
        scores = select_query(rollout, self.query, batch.attention_mask)
        return (scores * (batch.attention_mask != 0)).float()


class AttentionGradient(TokenAttribution):
    """Gradient of the target-class probability with respect to one layer's attention weights.

    ``g[b, h, q, k] = ∂ p_target / ∂ α_{l}[b, h, q, k]`` (total derivative: through every later layer), reduced to one
    score per key token like :class:`AttentionAttribution` (signed; default mean over heads of the chosen query
    row). Serrano & Smith (2019) rank by this gradient (``get_gradients_wrt_attention``, with ``p_max`` the softmax
    probability of the highest logit: ``target=None`` here).
    """

    def __init__(self, model: nn.Module, layer: int = -1, heads: Any = "mean", query: Any = "cls") -> None:
        super().__init__(model)
        self.layer = _check_layer(layer)
        self.heads = validate_heads(heads)
        self.query = validate_query(query)

    def _grad_and_attention(self, batch: Batch, target: Any) -> tuple[torch.Tensor, torch.Tensor]:
        with model_guard(self.model), torch.enable_grad(), AttentionTap(
            self.model, capture=[self.layer], keep_grad=True
        ) as tap:
            logits = call_model(self.model, batch)
            att = tap.attention(tap.resolve_layer(self.layer))
            t = resolve_target(target, logits.detach())
            p = probs_of(logits).gather(1, t[:, None]).sum()
            (grad,) = torch.autograd.grad(p, att)
        return grad.detach(), att.detach()

    def attribute_batch(self, batch: Batch, target: Any = None, **kwargs: Any) -> torch.Tensor:
        _no_extra(kwargs)
        grad, _ = self._grad_and_attention(batch, target)
        return reduce_attention(grad.float(), self.heads, self.query, batch.attention_mask)


class AttentionXGradient(AttentionGradient):
    """Attention times its gradient, ``α · ∂p_target/∂α``, reduced as :class:`AttentionGradient` (Serrano & Smith's
    "grad×attn" ranking)."""

    multiplies_by_inputs = True

    def attribute_batch(self, batch: Batch, target: Any = None, **kwargs: Any) -> torch.Tensor:
        _no_extra(kwargs)
        grad, att = self._grad_and_attention(batch, target)
        return reduce_attention((grad * att).float(), self.heads, self.query, batch.attention_mask)


def _no_extra(kwargs: dict) -> None:
    if kwargs:
        raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")
