"""The attention function attnfaith registers with transformers' ``AttentionInterface``.

It reproduces transformers' eager attention exactly (scores = q·kᵀ·scaling [+ position_bias] [+ mask], softmax in
``promote_types(dtype, float32)``, optional soft-capping and attention sinks, grouped-query attention by repeating
k/v) and hands the probabilities to the active :class:`~attnfaith.attention.tap.AttentionTap`, which records them and
may replace them (an intervention) before they multiply the values.

The mask comes from the eager mask function, registered under the same name with ``AttentionMaskInterface``
(without that registration transformers builds no mask for an unknown implementation and padding would be silently
ignored).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

IMPLEMENTATION = "attnfaith"

# module -> callback(module, probs [B,H,Tq,Tk], allowed, causal) -> probs to use
_ACTIVE: dict[nn.Module, Callable[..., torch.Tensor]] = {}


def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    if groups == 1:
        return x
    return x.repeat_interleave(groups, dim=1)


def attnfaith_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention with a tap. Shapes: query ``[B, Hq, Tq, D]``, key/value ``[B, Hkv, Tk, D]``."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    groups = query.shape[1] // key.shape[1]
    key = _repeat_kv(key, groups)
    value = _repeat_kv(value, groups)

    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    softcap = kwargs.get("softcap")
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    position_bias = kwargs.get("position_bias")
    if position_bias is not None:
        scores = scores + position_bias
    head_mask = kwargs.get("head_mask")

    Tq, Tk = scores.shape[-2], scores.shape[-1]
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            allowed = attention_mask[..., :Tk]
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        else:
            mask = attention_mask[..., :Tk]
            scores = scores + mask
            allowed = mask > torch.finfo(mask.dtype).min / 2
    else:
        allowed = torch.ones(1, 1, Tq, Tk, dtype=torch.bool, device=scores.device)
        if _is_causal(module, kwargs) and Tq > 1:
            allowed = allowed.tril(Tk - Tq)
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)

    work = torch.promote_types(scores.dtype, torch.float32)
    sinks = kwargs.get("s_aux")
    if sinks is not None:
        sink = sinks.reshape(1, -1, 1, 1).expand(scores.shape[0], -1, Tq, -1).to(scores.dtype)
        combined = torch.cat([scores, sink], dim=-1)
        combined = combined - combined.max(dim=-1, keepdim=True).values
        probs = torch.softmax(combined, dim=-1, dtype=work)[..., :-1]
    else:
        probs = torch.softmax(scores, dim=-1, dtype=work)
    probs = probs.to(query.dtype)

    callback = _ACTIVE.get(module)
    if callback is not None:
        probs = callback(module, probs, allowed, _is_causal(module, kwargs))

    if head_mask is not None:
        probs = probs * head_mask
    probs_for_values = nn.functional.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs_for_values.to(value.dtype), value)
    out = out.transpose(1, 2).contiguous()
    return out, probs


def _is_causal(module: nn.Module, kwargs: dict) -> bool:
    flag = kwargs.get("is_causal")
    if flag is None:
        flag = getattr(module, "is_causal", False)
    return bool(flag)


def register() -> None:
    """Register the function under ``"attnfaith"`` with both interfaces (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(IMPLEMENTATION, attnfaith_attention_forward)
    AttentionMaskInterface.register(IMPLEMENTATION, eager_mask)
