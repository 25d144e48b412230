"""Integrated gradients over the input token embeddings, built for a HuggingFace (or reference) model.

The attribution itself is Captum's: :class:`captum.attr.LayerIntegratedGradients` (Sundararajan et al. 2017) over the
output of the input embedding module, ``score[b, t] = Σ_d (e_{b,t,d} − e'_{b,t,d}) · ∫₀¹ ∂F(e' + α(e − e'))/∂e_{b,t,d}
dα`` (Riemann/Gauss–Legendre approximation with ``n_steps`` points), summed over the hidden axis. This module only
chooses what Captum leaves to the user:

* ``F`` = the probability of the target class (``probs_of``: softmax, or ``[1 − σ, σ]`` for one logit), the same
  ``ŷ`` as :class:`attnfaith.attr.GradientImportance`; ``output="logit"`` attributes the target logit instead;
* the baseline ids (:func:`ig_baseline`): every scored token (``batch.items``) replaced by the padding id (or
  ``baseline_id``), special tokens and padding kept, so the baseline is "the same frame with no content" and the
  special tokens and padding get attribution exactly 0;
* the embedding layer: the encoder's token embedding (:func:`attnfaith.attention.model_facts.input_embedding_module`).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from attnfaith._inputs import Batch, call_model, prepare_batch, probs_of, resolve_target
from attnfaith._state import local_forward_hook, model_guard
from attnfaith.attr._base import TokenAttribution
from attnfaith.attention.model_facts import input_embedding_module
from attnfaith.attention.readout_forward import ReadoutForwards
from attnfaith.engine import VariantRunner, report_variants
from attnfaith.perturb import pad_id_of

__all__ = ["EmbeddingIntegratedGradients", "integrated_gradients", "ig_baseline"]


def _baseline_from_batch(batch: Batch, baseline_id: int) -> torch.Tensor:
    return torch.where(batch.items, torch.full_like(batch.input_ids, baseline_id), batch.input_ids)


def ig_baseline(
    model: nn.Module,
    inputs: Any,
    additional_forward_args: Any = None,
    *,
    baseline_id: int | None = None,
    mask: torch.Tensor | None = None,
    tokenizer: Any = None,
    special_ids: Iterable[int] | None = None,
) -> torch.Tensor:
    """Baseline token ids ``[B, T]`` for integrated gradients: ``baseline_id`` (default the model's padding id) at
    every scored position (real, non-special tokens, or ``mask``), the input's own id everywhere else (special tokens
    and padding kept). ``inputs`` as everywhere in attnfaith (ids tensor or tokenizer output)."""
    batch = prepare_batch(model, inputs, additional_forward_args, mask=mask, tokenizer=tokenizer,
                          special_ids=special_ids)
    return _baseline_from_batch(batch, pad_id_of(model) if baseline_id is None else int(baseline_id))


class EmbeddingIntegratedGradients(TokenAttribution):
    """Captum's ``LayerIntegratedGradients`` over the input token embedding, summed over the hidden axis, with the
    baseline of :func:`ig_baseline` (see the module docstring for the exact definition).

    ``self.captum`` is the configured Captum object over ``self.route`` (the input embedding's output, routed through
    an identity module in this attribution's forwards only); its ``forward_func`` takes ``(input_ids,
    attention_mask, *further model arguments)``. :meth:`attribute` / :meth:`attribute_batch` return ``[B, T]``.
    ``target=None`` explains the predicted class. The convergence delta of the last call is kept in
    ``self.last_delta`` (``[B]``).

    Args:
        model: any model with ``get_input_embeddings()`` (encoder–decoder: the encoder's embedding is used).
        n_steps, method, internal_batch_size: passed to Captum's ``attribute`` (``internal_batch_size`` None: the
            batching engine's chunk for the batch's width, :meth:`attnfaith.engine.VariantRunner.chunk_size`, so
            that memory stays bounded and progress displays move between forwards).
        baseline_id: the id of the baseline tokens (default: padding id).
        multiply_by_inputs: Captum's flag (True: integrated gradients; False: the plain path-integrated gradient).
        output: ``"prob"`` (default) or ``"logit"``: what ``F`` is.
        readout: compute the last block of every forward (and its gradient) at the rows the classification head
            reads only, where that applies and checks out
            (:class:`attnfaith.attention.readout_forward.ReadoutForwards`). Same result up to float rounding.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        baseline_id: int | None = None,
        multiply_by_inputs: bool = True,
        output: str = "prob",
        readout: bool = True,
    ) -> None:
        super().__init__(model)
        from captum.attr import LayerIntegratedGradients

        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
        if output not in ("prob", "logit"):
            raise ValueError(f"output must be 'prob' or 'logit', got {output!r}")
        if baseline_id is not None and (isinstance(baseline_id, bool) or not isinstance(baseline_id, int)):
            raise ValueError(f"baseline_id must be an int token id or None, got {baseline_id!r}")
        self.n_steps = n_steps
        self.method = method
        self.internal_batch_size = internal_batch_size
        self.baseline_id = pad_id_of(model) if baseline_id is None else baseline_id
        self.output = output
        self.readout = bool(readout)
        self._forwards: ReadoutForwards | None = None
        self.multiplies_by_inputs = bool(multiply_by_inputs)
        self._names: tuple[str, ...] = ()
        self._template: Batch | None = None
        self.last_delta: torch.Tensor | None = None
        # Captum hooks ``self.route``, which the input embedding's output passes through only in forwards of this
        # attribution (a hook local to the calling thread): hooking the model's own embedding module would reach
        # every thread's forwards on the model
        self.route = nn.Identity()
        self.captum = LayerIntegratedGradients(self._forward, self.route, multiply_by_inputs=self.multiplies_by_inputs)

    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *extra: Any):
        """Captum's ``forward_func``: ``F`` on these ids. ``extra``: the further arguments of the batch being
        attributed (in the order of ``self._names``) or, when ``.captum`` is called directly, Captum-style
        positional arguments, bound by meaning (:func:`attnfaith._inputs.prepare_batch`)."""
        template = self._template
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if template is None:
            batch = prepare_batch(self.model, input_ids, (attention_mask, *extra))
        else:
            token_args: dict[str, torch.Tensor] = {}
            row_args: dict[str, torch.Tensor] = {}
            for name, value in zip(self._names, extra):
                (token_args if name in template.token_args else row_args)[name] = value
            batch = Batch(input_ids, attention_mask, attention_mask.bool(), token_args, row_args, template.const_args,
                          template.left_padded)
        with local_forward_hook(input_embedding_module(self.model), lambda module, args, out: self.route(out)):
            logits = self._forwards(batch) if self._forwards is not None else call_model(self.model, batch)
        report_variants(3 * int(input_ids.shape[0]))  # progress: these rows' forward and backward
        return probs_of(logits) if self.output == "prob" else logits

    def attribute_batch(self, batch: Batch, target: Any = None, **kwargs: Any) -> torch.Tensor:
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        model = self.model
        with model_guard(model):
            with torch.no_grad():
                logits = call_model(model, batch)
            t = resolve_target(target, logits)
            if self.output == "logit" and logits.shape[-1] == 1:
                t = torch.zeros_like(t)  # one logit: attribute it (the class-1 log-odds)
            baseline = _baseline_from_batch(batch, self.baseline_id)
            self._names = tuple(batch.token_args) + tuple(batch.row_args)
            self._template = batch
            extra = tuple(batch.token_args.values()) + tuple(batch.row_args.values())
            forwards = ReadoutForwards(model, enabled=self.readout)
            try:
                with torch.enable_grad(), forwards:
                    with torch.no_grad():
                        forwards.check(batch)  # before Captum's hooks: its forwards are the batch's own
                    self._forwards = forwards
                    attr, delta = self.captum.attribute(
                        batch.input_ids, baselines=baseline, target=t,
                        additional_forward_args=(batch.attention_mask,) + extra,
                        n_steps=self.n_steps, method=self.method,
                        internal_batch_size=self.internal_batch_size or VariantRunner(model).chunk_size(
                            int(batch.input_ids.shape[1]), batch.device),
                        return_convergence_delta=True,
                    )
            finally:
                self._template = None
                self._forwards = None
                self._names = ()
        if isinstance(attr, (tuple, list)):
            attr = attr[0]
        self.last_delta = delta.detach()
        scores = attr.detach().float()
        if scores.dim() == 3:
            scores = scores.sum(dim=-1)
        return scores * (batch.attention_mask != 0).to(scores.dtype)


def integrated_gradients(model: nn.Module, **kwargs: Any) -> EmbeddingIntegratedGradients:
    """Integrated gradients over ``model``'s input token embedding with the pad-token baseline (special tokens and
    padding kept): an :class:`EmbeddingIntegratedGradients` (``kwargs``: its options). Use it as any attnfaith
    attribution (``.attribute(inputs, target=None, additional_forward_args=None) -> [B, T]``) or reach the configured
    Captum object as ``.captum``."""
    return EmbeddingIntegratedGradients(model, **kwargs)
