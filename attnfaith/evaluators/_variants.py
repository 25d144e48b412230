"""Forwards of attention-level variants, with the prefix cache when it applies.

An attention-level variant is one of the examples with interventions on attention layers ``>= first_layer`` only,
so the blocks below are the same for all its variants: :class:`AttentionVariants` primes an
:class:`attnfaith.attention.prefix.PrefixCache` with the original forward (which every evaluator needs anyway) and
then runs each chunk of variants through the upper blocks only. Where the cache does not apply (the layer is in the
first block, blocks share weights, the partial forward does not reproduce the full one), forwards are complete; the
results are the same either way, up to float rounding.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from attnfaith._inputs import Batch, call_model
from attnfaith.attention import AttentionTap
from attnfaith.attention.prefix import PrefixCache
from attnfaith.engine import VariantRunner

__all__ = ["AttentionVariants", "call_model_autocast"]


def call_model_autocast(model: nn.Module, batch: Batch, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``call_model``, under ``torch.autocast(dtype)`` when ``dtype`` is given (logits returned in float32)."""
    if dtype is None:
        return call_model(model, batch)
    with torch.autocast(device_type=batch.device.type, dtype=dtype):
        return call_model(model, batch).float()


class AttentionVariants:
    """Run the original forward and attention-intervened variants of ``batch`` inside an active ``tap``.

    Args:
        model, tap, batch: the model, its active tap (one complete forward done, or ``original()`` first), the
            normalised batch.
        first_layer: the lowest layer any variant intervenes on.
        runner: the batching engine (chunks of variants).
        prefix: use the prefix cache when it applies (False: always complete forwards).
        autocast: an optional ``torch.autocast`` dtype for the forwards (e.g. ``torch.bfloat16`` on CUDA).
    """

    def __init__(self, model: nn.Module, tap: AttentionTap, batch: Batch, first_layer: int | None,
                 runner: VariantRunner, *, prefix: bool = True, autocast: torch.dtype | None = None) -> None:
        self.model = model
        self.tap = tap
        self.batch = batch
        self.runner = runner
        self.first_layer = first_layer
        self.use_prefix = prefix and first_layer is not None
        self.autocast = autocast
        self.cache: PrefixCache | None = None

    def __enter__(self) -> "AttentionVariants":
        return self

    def __exit__(self, *exc) -> None:
        if self.cache is not None:
            self.cache.__exit__(*exc)
            self.cache = None

    @property
    def prefix_active(self) -> bool:
        return self.cache is not None and self.cache.active

    def _call(self, rows: torch.Tensor) -> torch.Tensor:
        return call_model_autocast(self.model, self.batch.index_rows(rows), self.autocast)

    def original(self, capture_layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``[B, C]`` of the unmodified examples (in chunks), and the attention of ``capture_layer``
        (``[B, H, Tq, Tk]``, gathered over the chunks; the tap must capture that layer) or None. Primes the prefix
        cache."""
        B, T = self.batch.input_ids.shape
        if not self.tap.layers:  # the layer list is needed to plan the cache: one small complete forward
            self._call(torch.zeros(1, dtype=torch.long, device=self.batch.device))
        attentions: list[torch.Tensor] = []

        def rows_forward(rows: torch.Tensor) -> torch.Tensor:
            out = self._call(rows)
            if capture_layer is not None and sum(a.shape[0] for a in attentions) < B:
                attentions.append(self.tap.attention(capture_layer))  # the chunks of the original forward only
            return out

        if self.use_prefix:
            self.cache = PrefixCache(self.model, self.tap, self.first_layer)
            logits = self.cache.prime(rows_forward, B, self.runner, seq_len=T)
        else:
            logits = self.runner.run(
                B, lambda s, e: rows_forward(torch.arange(s, e, device=self.batch.device)), seq_len=T
            )
        attention = torch.cat(attentions) if attentions else None
        return logits, attention

    def run(self, rows: torch.Tensor, interventions: Sequence[tuple[str, Any, dict]]) -> torch.Tensor:
        """Logits of the variants whose source rows are ``rows``, with ``interventions`` — each
        ``(kind, value, kwargs)`` for :meth:`AttentionTap.intervene` (values shaped for these rows) — applied."""
        added = [self.tap.intervene(kind, value, **kwargs) for kind, value, kwargs in interventions]
        try:
            if self.cache is not None:
                self.cache.select(rows)
            return self._call(rows)
        finally:
            for iv in added:
                self.tap.remove(iv)
