"""The built-in attribution methods of a study (see ``docs/metrics.md``).

==========  ====================================================================================================
attention   :class:`attnfaith.AttentionAttribution` ``(model, layer)``: the layer's attention (mean over heads) of
            the query row the classifier reads ([CLS] / first real token; the last real token for decoder and
            encoder-decoder classifiers)
rollout     :class:`attnfaith.AttentionRollout` (Abnar & Zuidema 2020), same query row
gradient    :class:`attnfaith.attr.gradient.GradientImportance`: ``|∇ŷ·e|`` (Jain & Wallace's gradient measure)
ig          :class:`attnfaith.attr.ig.EmbeddingIntegratedGradients` (Captum ``LayerIntegratedGradients`` over the
            token embedding, pad-token baseline)
loo         :class:`attnfaith.attr.loo.LeaveOneOut`: TVD of the output when the token is deleted (Jain & Wallace)
attention_gradient    :class:`attnfaith.AttentionGradient`: ∂p̂/∂α of the layer's attention weights (Serrano &
            Smith's gradient ranking; the erasure test ranks by it at the intervened layer); not run unless named
attention_x_gradient  :class:`attnfaith.AttentionXGradient`: α·∂p̂/∂α (Serrano & Smith); not run unless named
known_rationale  the known rationale (an oracle, in runs with rationales only): 1 on the items of the rationale's
            words, 0 elsewhere (ties: lower position first), as ERASER reports its human rationales beside the methods
random      seeded ``U[0, 1)`` scores (per example: ``example_seed(seed, dataset index)``, :mod:`attnfaith.seeding`):
            the first of the Serrano & Smith random orders that the erasure test uses;
            evaluators that rank tokens get the ranking ``"random"`` (all of its orders) instead
==========  ====================================================================================================
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from attnfaith.attention.model_facts import input_embedding_module
from attnfaith.study.registry import MethodSpec, register_method

__all__ = ["RandomScores", "KnownRationale"]


class RandomScores:
    """Seeded ``U[0, 1)`` scores on the items (0 elsewhere): the first of the random orders
    :class:`attnfaith.ErasureFlip` draws with the same seed and example ids (:func:`attnfaith.metrics.random_scores`
    with one CPU generator per row, :func:`attnfaith.seeding.example_generators` ``(seed, example_ids)``; default
    ids ``0..B-1``; moved to the batch's device)."""

    def attribute_batch(self, batch: Any, target: Any = None, *, seed: int = 0,
                        example_ids: Any = None) -> torch.Tensor:
        from attnfaith.metrics import random_scores
        from attnfaith.seeding import example_generators

        gens = example_generators(int(seed), example_ids, batch.size)
        return random_scores(batch.items.detach().to("cpu"), generator=gens).to(batch.device)


class KnownRationale:
    """The run's known rationale as scores: 1.0 on the items of the rationale (``rationale_items``, BoolTensor
    ``[B, T]``, given by the runner from the data's word indices), 0.0 elsewhere."""

    def attribute_batch(self, batch: Any, target: Any = None, *, rationale_items: torch.Tensor) -> torch.Tensor:
        return (rationale_items.to(batch.device) & batch.items).float()


def _attention(model: nn.Module, config: Any, query: str) -> Any:
    from attnfaith.attr import AttentionAttribution

    return AttentionAttribution(model, layer=config.layer, query=query)


def _rollout(model: nn.Module, config: Any, query: str) -> Any:
    from attnfaith.attr import AttentionRollout

    return AttentionRollout(model, query=query)


def _check_rollout(model: nn.Module, batch: Any, query: str, layers: Sequence[Any]) -> str | None:
    """Rollout needs a self-attention layer over the input tokens, and must run on the first example."""
    if not any(l.kind == "self" for l in layers):
        return "the model has no self-attention layer over the input tokens to roll out"
    try:
        _rollout(model, None, query).attribute_batch(batch)
    except ValueError as exc:
        return str(exc).replace("model: ", "")
    return None


def _check_embedding(model: nn.Module, batch: Any, query: str, layers: Sequence[Any]) -> str | None:
    """Gradient methods need the model's input embedding."""
    try:
        input_embedding_module(model)
    except TypeError as exc:
        return str(exc)
    return None


def _gradient(model: nn.Module, config: Any, query: str) -> Any:
    from attnfaith.attr.gradient import GradientImportance

    return GradientImportance(model, detach_attention=bool(getattr(config, "gradient_detach_attention", False)))


def _ig(model: nn.Module, config: Any, query: str) -> Any:
    from attnfaith.attr.ig import EmbeddingIntegratedGradients

    return EmbeddingIntegratedGradients(model, n_steps=config.ig_steps, internal_batch_size=config.variants_per_forward)


def _attention_gradient(model: nn.Module, config: Any, query: str) -> Any:
    from attnfaith.attr import AttentionGradient

    return AttentionGradient(model, layer=config.layer, query=query)


def _attention_x_gradient(model: nn.Module, config: Any, query: str) -> Any:
    from attnfaith.attr import AttentionXGradient

    return AttentionXGradient(model, layer=config.layer, query=query)


def _loo(model: nn.Module, config: Any, query: str) -> Any:
    from attnfaith.attr.loo import LeaveOneOut

    return LeaveOneOut(model, "delete", max_examples_per_batch=config.variants_per_forward)


register_method(MethodSpec(name="attention", label="attention", short="attention", color="#1f77b4",
                           build=_attention, reads_attention=True, cost=lambda n, config: 1))
register_method(MethodSpec(name="rollout", label="attention rollout", short="rollout", color="#17becf",
                           build=_rollout, reads_attention=True, check=_check_rollout, cost=lambda n, config: 1))
register_method(MethodSpec(name="gradient", label="gradient × input", short="grad×input", color="#2ca02c",
                           build=_gradient, check=_check_embedding, cost=lambda n, config: 3))
register_method(MethodSpec(name="ig", label="integrated gradients", short="IG", color="#9467bd", build=_ig,
                           check=_check_embedding, cost=lambda n, config: 3 * config.ig_steps))
register_method(MethodSpec(name="loo", label="leave-one-out", short="LOO", color="#d62728", build=_loo,
                           cost=lambda n, config: n + 1))
register_method(MethodSpec(name="known_rationale", label="known rationale (oracle)", short="rationale",
                           color="#000000", build=lambda model, config, query: KnownRationale(), needs_rationale=True,
                           cost=lambda n, config: 0))
register_method(MethodSpec(name="random", label="random", short="random", color="#7f7f7f",
                           build=lambda model, config, query: RandomScores(), seeded=True, ranking="random",
                           cost=lambda n, config: 0))
register_method(MethodSpec(name="attention_gradient", label="attention gradient ∂p/∂α", short="∂p/∂α",
                           color="#bcbd22", build=_attention_gradient, reads_attention=True, ranking="gradient",
                           default=False, cost=lambda n, config: 3))
register_method(MethodSpec(name="attention_x_gradient", label="attention × gradient α·∂p/∂α", short="α·∂p/∂α",
                           color="#8c564b", build=_attention_x_gradient, reads_attention=True,
                           ranking="attention_x_gradient", default=False, cost=lambda n, config: 3))
