"""Building blocks that make a custom PyTorch model's attention visible to attnfaith.

A HuggingFace model needs nothing: :class:`attnfaith.AttentionTap` reaches its attention through transformers'
``AttentionInterface``. A model of your own (for example the BiLSTM with additive attention of Jain & Wallace, 2019)
computes its attention distribution with :class:`AttentionSoftmax` instead of ``torch.softmax``; the tap then finds
every such module, records what it outputs and can intervene on it (permute, zero and renormalise, replace, uniform),
exactly as for a transformer's heads.

A model that cannot be edited can instead name the module whose *output* is the attention distribution:
``AttentionTap(model, modules=["decoder.attn"])``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AttentionSoftmax", "masked_softmax"]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None, dim: int = -1) -> torch.Tensor:
    """Softmax of ``scores`` over ``dim`` with positions where ``mask`` is False given probability exactly 0.

    The softmax runs in ``promote_types(scores.dtype, float32)`` and is cast back. A row whose mask is all False
    gets all zeros (never NaN).
    """
    work = torch.promote_types(scores.dtype, torch.float32)
    s = scores.to(work)
    if mask is not None:
        mask = mask.to(device=s.device, dtype=torch.bool)
        s = s.masked_fill(~mask, float("-inf"))
        # all-masked rows: softmax of all -inf is NaN; give them zeros instead
        empty = ~mask.any(dim=dim, keepdim=True)
        s = s.masked_fill(empty, 0.0)
        p = torch.softmax(s, dim=dim).masked_fill(~mask | empty, 0.0)
    else:
        p = torch.softmax(s, dim=dim)
    return p.to(scores.dtype)


class AttentionSoftmax(nn.Module):
    """A masked softmax that marks its output as an attention distribution for :class:`attnfaith.AttentionTap`.

    ``forward(scores, mask=None)``: ``scores`` is ``[B, Tk]`` (one query per example, as in additive attention) or
    ``[B, H, Tq, Tk]`` (heads and query rows); ``mask`` is a boolean tensor broadcastable to ``scores``, True on
    keys that may be attended (real tokens), False on padding. The output has the shape of ``scores``, rows sum to 1
    over the allowed keys and are exactly 0 elsewhere.

    Args:
        causal: the layer is causal (query ``i`` may only see keys ``<= i``); only meaningful for 4-D scores. The
            tap then never lets an intervention move weight onto a future key.
        uniform: ignore the scores and output the uniform distribution over the allowed keys (Wiegreffe & Pinter's
            frozen-uniform baseline, ``modelUtils.generate_frozen_uniform_attn``).
    """

    def __init__(self, causal: bool = False, uniform: bool = False) -> None:
        super().__init__()
        self.causal = bool(causal)
        self.uniform = bool(uniform)

    def allowed(self, scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Boolean tensor of the scores' shape: which keys each query may attend to."""
        allowed = torch.ones_like(scores, dtype=torch.bool)
        if mask is not None:
            allowed = allowed & mask.to(device=scores.device, dtype=torch.bool)
        if self.causal and scores.dim() >= 2:
            tq, tk = scores.shape[-2], scores.shape[-1]
            tri = torch.ones(tq, tk, dtype=torch.bool, device=scores.device).tril(tk - tq)
            allowed = allowed & tri
        return allowed

    def forward(self, scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        allowed = self.allowed(scores, mask)
        if self.uniform:
            scores = torch.zeros_like(scores)
        return masked_softmax(scores, allowed, dim=-1)

    def extra_repr(self) -> str:
        return f"causal={self.causal}, uniform={self.uniform}"
