"""What every evaluator shares: the contract of ``evaluate``, the model, the batching engine, input normalisation,
attribution resolution and the checks of common arguments."""

from __future__ import annotations

import inspect

from typing import Any, Iterable

import torch
from torch import nn

from attnfaith._inputs import Batch, call_model, prepare_batch
from attnfaith.attention.forward_args import POSITIONAL_MEANING
from attnfaith.attention.model_facts import input_embedding_module, model_device
from attnfaith.attr._base import reduce_attention
from attnfaith.engine import VariantRunner
from attnfaith.evaluators.result import Result
from attnfaith.metrics import max_over_items

__all__ = ["Evaluator", "attribution_scores", "captum_forward_args", "check_items", "max_attention_of"]


class Evaluator:
    """Base class of the faithfulness evaluators: ``Evaluator(model, ...).evaluate(inputs, attributions=None, *,
    target=None, additional_forward_args=None, max_examples_per_batch=None, **options) -> Result``.

    Args:
        model: a HuggingFace model or a custom model the tap reaches (see :class:`attnfaith.AttentionTap`).
        max_examples_per_batch: variants per forward (Captum's name); None chooses it from ``memory_budget``.
        memory_budget: bytes of activation memory one forward may use (default: 2 GiB on CPU, a quarter of the
            free memory on CUDA).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        max_examples_per_batch: int | None = None,
        memory_budget: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.runner = VariantRunner(model, max_examples_per_batch=max_examples_per_batch, memory_budget=memory_budget)

    def evaluate(
        self,
        inputs: Any,
        attributions: Any = None,
        *,
        target: Any = None,
        additional_forward_args: Any = None,
        max_examples_per_batch: int | None = None,
        **options: Any,
    ) -> Result:
        """Run the test on a batch and return its :class:`attnfaith.evaluators.result.Result`.

        Args:
            inputs, additional_forward_args: Captum's convention (ids + ``(attention_mask, ...)``) or a tokenizer's
                output (see :mod:`attnfaith._inputs`).
            attributions: what is tested (a ``[B, T]`` tensor, an object with Captum's ``.attribute``, a ranking
                name), or None: the evaluator's default (the model's attention; evaluators that test the attention
                itself take nothing else).
            target: the class the attributions explain (None: the predicted class).
            max_examples_per_batch: variants per forward for this call (None: the constructor's).
            options: each evaluator's own keywords; every evaluator takes ``mask`` (BoolTensor ``[B, T]`` of the
                scored positions), ``tokenizer`` and ``special_ids`` (where the special ids come from), and
                ``example_ids`` (LongTensor or sequence ``[B]`` of the rows' global example ids; default ``0..B-1``):
                every random draw of row ``b`` comes from its own CPU generator seeded
                ``example_seed(seed, example_ids[b])`` (:mod:`attnfaith.seeding`), so evaluating rows 0..9 at once
                or as two calls on 0..4 and 5..9 with those ids gives the same per-example results.
        """
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def prepare(
        self,
        inputs: Any,
        additional_forward_args: Any = None,
        *,
        mask: torch.Tensor | None = None,
        tokenizer: Any = None,
        special_ids: Iterable[int] | None = None,
    ) -> Batch:
        return prepare_batch(
            self.model, inputs, additional_forward_args, mask=mask, tokenizer=tokenizer, special_ids=special_ids,
            device=self.device,
        )

    def runner_for(self, max_examples_per_batch: int | None) -> VariantRunner:
        """The engine for one call: the constructor's unless the call overrides ``max_examples_per_batch``."""
        if max_examples_per_batch is None:
            return self.runner
        return VariantRunner(self.model, max_examples_per_batch=max_examples_per_batch,
                             memory_budget=self.runner.memory_budget)

    def logits(self, batch: Batch) -> torch.Tensor:
        return call_model(self.model, batch)


def check_items(batch: Batch, name: str = "inputs", minimum: int = 1) -> None:
    """``ValueError`` naming ``name`` if an example has fewer than ``minimum`` items."""
    n = batch.n_items
    bad = (n < minimum).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"{name}: example(s) {bad} have fewer than {minimum} real item(s) to erase (items are the real, "
            "non-special, non-padding tokens, or the positions of mask=)"
        )


def max_attention_of(att: torch.Tensor, query: Any, batch: Batch) -> torch.Tensor:
    """``[B]``: the largest weight on an item of a layer's attention ``[B, H, Tq, Tk]`` reduced as
    :class:`attnfaith.attr.AttentionAttribution` does (mean over heads of the ``query`` row; the single row of
    one-query attention): :func:`attnfaith.metrics.max_over_items` over ``batch.items`` (over every key when the keys
    are not the input tokens). 0 for an example without items."""
    scores = reduce_attention(att.float(), "mean", query, batch.attention_mask)
    return max_over_items(scores, batch.items if scores.shape == batch.items.shape else None)


def attribution_scores(attributions: Any, model: nn.Module, batch: Batch, target: torch.Tensor,
                       name: str = "attributions") -> torch.Tensor:
    """Scores ``[B, T]`` from a tensor or an object with Captum's ``.attribute``, validated.

    * a tensor ``[B, T]`` is used as given;
    * an attnfaith attribution (``attribute_batch``) runs on the normalised batch;
    * any other object with ``.attribute`` (a Captum ``Attribution`` such as ``LayerIntegratedGradients``,
      ``Saliency``, ``FeatureAblation``, ``Lime``) is called Captum's way:
      ``attribute(input_ids, target=target, additional_forward_args=(attention_mask, ...))``; a trailing hidden axis
      (``[B, T, D]``, as attributions to embeddings are) is summed. Captum's primary gradient methods
      (``IntegratedGradients``, ``Saliency``, ``InputXGradient``, ``DeepLift``..., also inside ``NoiseTunnel``) cannot
      take integer ids: they get the input embeddings ``[B, T, D]`` instead (their ``forward_func`` must take
      ``(inputs_embeds, attention_mask, ...)``), and the result is summed over ``D``.

    ``ValueError`` naming ``name`` for a wrong shape or NaN/inf at a scored position.
    """
    if isinstance(attributions, torch.Tensor):
        scores = attributions
    elif hasattr(attributions, "attribute_batch"):
        scores = attributions.attribute_batch(batch, target)
    elif hasattr(attributions, "attribute"):
        first = _input_embeddings(model, batch) if _takes_embeddings(attributions) else batch.input_ids
        scores = attributions.attribute(first, target=target,
                                        additional_forward_args=captum_forward_args(attributions, batch))
        if isinstance(scores, tuple):
            scores = scores[0]
    elif isinstance(attributions, str):
        raise ValueError(
            f"{name}={attributions!r}: a method name is not accepted here; pass a [B, T] tensor or an attribution "
            "object with .attribute (e.g. attnfaith.AttentionAttribution(model))"
        )
    else:
        raise TypeError(
            f"{name} must be a [B, T] tensor or an object with Captum's .attribute; got {type(attributions).__name__}"
        )
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"{name}: the attribution returned {type(scores).__name__}, expected a tensor")
    scores = scores.detach()
    if scores.dim() == 3 and scores.shape[:2] == batch.input_ids.shape:
        scores = scores.sum(dim=-1)
    if scores.dim() == 1 and batch.size == 1:
        scores = scores[None]
    if tuple(scores.shape) != tuple(batch.input_ids.shape):
        raise ValueError(
            f"{name} has shape {tuple(scores.shape)} but the inputs are {tuple(batch.input_ids.shape)} "
            "(one score per token expected)"
        )
    scores = scores.to(device=batch.device, dtype=torch.float32 if not scores.is_floating_point() else scores.dtype)
    if not torch.isfinite(scores[batch.items]).all():
        raise ValueError(f"{name} contains NaN or inf at scored positions")
    return scores


def captum_forward_args(attributions: Any, batch: Batch) -> tuple:
    """The ``additional_forward_args`` a Captum attribution is called with, so that its ``forward_func`` gets
    exactly what its signature takes: the batch's attention mask, token type ids and position ids, in that order
    (:data:`attnfaith.attention.forward_args.POSITIONAL_MEANING`), as many as the function takes after its inputs
    (all of them for ``*args``), trailing ones the batch does not have left out. A user's
    ``forward = lambda ids, mask: ...`` gets ``(mask,)`` even for a tokenizer batch with ``token_type_ids``."""
    values = [batch.attention_mask, *(batch.token_args.get(n) for n in POSITIONAL_MEANING[1:])]
    inner = getattr(attributions, "attribution_method", attributions)  # NoiseTunnel wraps another method
    forward = getattr(inner, "forward_func", None)
    capacity = len(values)
    if callable(forward):
        try:
            params = list(inspect.signature(forward).parameters.values())
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            params = []
        if params and not any(p.kind == p.VAR_POSITIONAL for p in params):
            positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            capacity = max(len(positional) - 1, 0)
    args = values[:capacity]
    while args and args[-1] is None:
        args.pop()
    return tuple(args)


def _takes_embeddings(attributions: Any) -> bool:
    """True for Captum's primary gradient attributions (not layer/neuron ones), which need float inputs."""
    try:
        from captum.attr._utils.attribution import GradientAttribution, LayerAttribution, NeuronAttribution
    except Exception:  # pragma: no cover - captum missing
        return False
    inner = getattr(attributions, "attribution_method", attributions)  # NoiseTunnel wraps another method
    return isinstance(inner, GradientAttribution) and not isinstance(inner, (LayerAttribution, NeuronAttribution))


def _input_embeddings(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The (encoder) input token embeddings of the batch ``[B, T, D]``, detached."""
    try:
        module = input_embedding_module(model)
    except Exception:
        get = getattr(model, "get_input_embeddings", None)
        module = get() if callable(get) else None
    if module is None:
        raise TypeError("attributions: a Captum gradient method on embeddings needs model.get_input_embeddings()")
    with torch.no_grad():
        return module(batch.input_ids).detach().requires_grad_(True)
