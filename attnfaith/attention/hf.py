"""The attention function attnfaith registers with transformers' ``AttentionInterface``.

While a tap uses the interface route, the model's configs name the ``"attnfaith"`` implementation. That is shared by
every thread that runs the model, so each call decides by the calling thread:

* a module whose tap is active in this thread (``_ACTIVE[module](module)`` returns the tap's callback): transformers'
  eager attention, reproduced exactly (scores = q·kᵀ·scaling [+ position_bias] [+ mask], softmax in
  ``promote_types(dtype, float32)``, optional soft-capping and attention sinks, grouped-query attention by repeating
  k/v), with the probabilities handed to the tap, which records them and may replace them (an intervention) before
  they multiply the values;
* any other forward of a switched model: the implementation its config had before the switch (the modeling file's
  own ``eager_attention_forward`` for eager, ``sdpa_attention_forward`` for sdpa...), with that implementation's
  mask: the same numbers as without attnfaith.

The mask function is registered under the same name with ``AttentionMaskInterface`` (without that registration
transformers builds no mask for an unknown implementation and padding would be silently ignored): eager's mask in a
tapped forward, the original implementation's otherwise.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any, Callable

import torch
from torch import nn

IMPLEMENTATION = "attnfaith"

# the tap callback ``(module, probs [B,H,Tq,Tk], allowed, causal) -> probs`` for an object in the calling thread, or
# None where no tap is active on it there
Resolver = Callable[[object], Callable[..., torch.Tensor] | None]

# module -> resolver, while the module is switched to attnfaith's function
_ACTIVE: dict[nn.Module, Resolver] = {}
# id(config) -> resolver, while the config names IMPLEMENTATION
_SWITCHED: dict[int, Resolver] = {}
# id(config) -> (weak reference to it, its implementation before its last switch); dropped with the config, kept
# after the switch is undone so that a forward which read IMPLEMENTATION just before still gets the original
_ORIGINAL: dict[int, tuple[weakref.ref, str | None]] = {}


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
    """Attention of a switched model: eager attention through the calling thread's tap, the config's original
    implementation where no tap is active on ``module`` here, eager attention for a module never switched.

    Shapes: query ``[B, Hq, Tq, D]``, key/value ``[B, Hkv, Tk, D]``."""
    resolver = _ACTIVE.get(module)
    callback = resolver(module) if resolver is not None else None
    if callback is None:
        original = _original_attention(module)
        if original is not None:
            return original(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    return _eager_attention(callback, module, query, key, value, attention_mask, scaling, dropout, **kwargs)


def _eager_attention(
    callback: Callable[..., torch.Tensor] | None,
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention; ``callback(module, probs, allowed, causal)`` (if given) returns the probabilities to use."""
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


def _original_name(config: object) -> str | None:
    """The implementation ``config`` had before attnfaith last switched it (``"eager"`` if it never did)."""
    entry = _ORIGINAL.get(id(config))
    if entry is None or entry[0]() is not config or entry[1] == IMPLEMENTATION:
        return "eager"
    return entry[1]


def _original_attention(module: nn.Module) -> Callable[..., Any] | None:
    """The attention function ``module`` runs without attnfaith: its config's original implementation, eager being
    the ``eager_attention_forward`` of the module's modeling file. None for a module whose config attnfaith never
    switched, or whose file has no eager function (attnfaith's eager re-implementation is then used: the same)."""
    config = getattr(module, "config", None)
    if id(config) not in _ORIGINAL:
        return None
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    eager = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    name = _original_name(config)
    if name in (None, "eager") and not callable(eager):
        return None
    return ALL_ATTENTION_FUNCTIONS.get_interface(name, eager)


def attnfaith_mask(**kwargs: Any) -> torch.Tensor | None:
    """The mask function registered for IMPLEMENTATION: eager's mask for a forward tapped in the calling thread
    (or a call without ``config``), else the mask of the config's original implementation (None, as transformers
    gives, for an implementation with no mask function)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    config = kwargs.get("config")
    resolver = _SWITCHED.get(id(config))
    if config is None or (resolver is not None and resolver(config) is not None):
        return eager_mask(**kwargs)
    name = _original_name(config)
    if name not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        return None
    return ALL_MASK_ATTENTION_FUNCTIONS[name](**kwargs)


def switch(config: Any, resolver: Resolver) -> Callable[[], None]:
    """Make ``config`` name IMPLEMENTATION (``resolver`` tells, per call, whether the calling thread taps it);
    returns the function restoring its previous implementation."""
    key = id(config)
    saved = config.__dict__.get("_attn_implementation_internal")
    _ORIGINAL[key] = (weakref.ref(config, lambda _ref: _ORIGINAL.pop(key, None)), saved)
    _SWITCHED[key] = resolver
    config.__dict__["_attn_implementation_internal"] = IMPLEMENTATION

    def restore() -> None:
        config.__dict__["_attn_implementation_internal"] = saved
        _SWITCHED.pop(key, None)

    return restore


def activate(module: nn.Module, resolver: Resolver) -> Callable[[], None]:
    """Let ``resolver`` give ``module``'s tap callback per call; returns the function that undoes it."""
    _ACTIVE[module] = resolver
    return lambda: _ACTIVE.pop(module, None)


def register() -> None:
    """Register the functions under ``"attnfaith"`` with both interfaces (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(IMPLEMENTATION, attnfaith_attention_forward)
    AttentionMaskInterface.register(IMPLEMENTATION, attnfaith_mask)
