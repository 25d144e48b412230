"""Gradient × input token importance, Jain & Wallace's gradient measure.

Jain & Wallace (2019), ``model/Binary_Classification.py::gradient_mem`` and ``Trainers/PlottingBC.py::process_grads``
(key ``'XxE[X]'``): for every token ``t`` with word embedding ``e_t``,

    g_t = | (∂ŷ / ∂e_t) · e_t |

(the gradient times the embedding, summed over the embedding dimension, absolute value), ``ŷ`` the probability of
the explained class: ``σ(logit)`` for a one-logit model (their binary tasks), the softmax probability of the class
for several logits (their QA / NLI models). They then L1-normalise, which changes no ranking and is left out here.
Their forward runs with ``batch_data.detach = True``: the attention weights are detached, so the gradient does not
flow through attention (``detach_attention=True`` here; the default ``False`` takes the full gradient).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from attnfaith._inputs import Batch, call_model, probs_of, resolve_target
from attnfaith._state import local_forward_hook, model_guard
from attnfaith.attention import AttentionTap
from attnfaith.attention.model_facts import input_embedding_module
from attnfaith.attr._base import TokenAttribution

__all__ = ["GradientImportance"]


@contextlib.contextmanager
def embedding_leaf(model: nn.Module):
    """Within the body, the first call of the input embedding module in each forward of the calling thread returns a
    fresh leaf tensor (``out.detach().requires_grad_()``); ``store["leaf"]`` holds the last one."""
    module = input_embedding_module(model)
    store: dict[str, Any] = {}

    def hook(mod, args, out):
        if store.get("armed", True) is False:
            return None
        store["armed"] = False
        leaf = out.detach().requires_grad_(True)
        store["leaf"] = leaf
        return leaf

    with local_forward_hook(module, hook):  # forwards of other threads on the same model are untouched
        yield store


class GradientImportance(TokenAttribution):
    """``score[b, t] = |Σ_d (∂ŷ_b / ∂e_{b,t,d}) · e_{b,t,d}|`` (Jain & Wallace 2019, gradient importance).

    ``e_t`` is the output of the model's input token embedding (``model.get_input_embeddings()``; for an
    encoder–decoder model such as BART or T5 the *encoder's* embedding call: the encoder input is scored, the
    decoder's shifted copy of the ids is held fixed), ``ŷ_b`` the probability of the target class
    (``probs_of``: softmax over the logits, ``[1 − σ, σ]`` for a single logit; ``target=None`` explains the predicted
    class, as Jain & Wallace's QA/NLI code does; for their one-logit binary models ``ŷ = σ(logit)`` equals the
    target-1 probability, and ``|∂(1 − σ)|`` gives the same scores). The result is 0 on padding; special tokens get
    their score like any token (metrics leave them out through ``batch.items``).

    Args:
        model: any model with ``get_input_embeddings()``.
        detach_attention: hold every attention distribution fixed (gradient not flowing through the attention
            weights), as Jain & Wallace's code does (``batch_data.detach = True``). Default False: the full
            gradient.
    """

    multiplies_by_inputs = True

    def __init__(self, model: nn.Module, detach_attention: bool = False) -> None:
        super().__init__(model)
        if not isinstance(detach_attention, bool):
            raise TypeError(f"detach_attention must be a bool, got {type(detach_attention).__name__}")
        self.detach_attention = detach_attention
        input_embedding_module(model)  # fail early with a clear message

    def attribute_batch(self, batch: Batch, target: Any = None, **kwargs: Any) -> torch.Tensor:
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        model = self.model
        with model_guard(model), torch.enable_grad():
            for p in model.parameters():  # only d y / d e is needed; model_guard restores requires_grad
                p.requires_grad_(False)
            tap = AttentionTap(model, capture=None, detach=True) if self.detach_attention else contextlib.nullcontext()
            with embedding_leaf(model) as store, tap:
                logits = call_model(model, batch)
            leaf = store.get("leaf")
            if leaf is None:
                raise RuntimeError("model: the input embedding module did not run in the forward")
            t = resolve_target(target, logits.detach())
            y = probs_of(logits).gather(1, t[:, None]).sum()
            (grad,) = torch.autograd.grad(y, leaf, allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(leaf)
        scores = (grad.detach().float() * leaf.detach().float()).sum(dim=-1).abs()
        return scores * (batch.attention_mask != 0).to(scores.dtype)
