"""Forwards of attention-level variants, with the readout path or the prefix cache when they apply.

An attention-level variant is one of the examples with interventions on attention layers ``>= first_layer`` only,
so the blocks below are the same for all its variants: :class:`AttentionVariants` primes an
:class:`attnfaith.attention.prefix.PrefixCache` with the original forward (which every evaluator needs anyway) and
then runs each chunk of variants through the upper blocks only. When the intervened layer is the model's last one,
the same original forward also primes an :class:`attnfaith.attention.readout.ReadoutCache`, and each variant then
costs only the rows of the last block that the classification head reads. Where a fast path does not apply (the
layer is in the first block, blocks share weights, an unknown head, a check failed), the next one is used: readout,
then prefix cache, then complete forwards; the results are the same either way, up to float rounding.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch
from torch import nn

from attnfaith._inputs import Batch, call_model
from attnfaith.attention import AttentionTap
from attnfaith.attention.prefix import PrefixCache
from attnfaith.attention.readout import ReadoutCache
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
        prefix: use the prefix cache when it applies (False: always complete forwards, no readout path either).
        readout: at the last layer, compute only the rows the classification head reads when that applies
            (:class:`attnfaith.attention.readout.ReadoutCache`; not under ``autocast``).
        autocast: an optional ``torch.autocast`` dtype for the forwards (e.g. ``torch.bfloat16`` on CUDA).
    """

    def __init__(self, model: nn.Module, tap: AttentionTap, batch: Batch, first_layer: int | None,
                 runner: VariantRunner, *, prefix: bool = True, readout: bool = True,
                 autocast: torch.dtype | None = None) -> None:
        self.model = model
        self.tap = tap
        self.batch = batch
        self.runner = runner
        self.first_layer = first_layer
        self.use_prefix = prefix and first_layer is not None
        self.use_readout = self.use_prefix and readout and autocast is None
        self.autocast = autocast
        self.cache: PrefixCache | None = None
        self.readout: ReadoutCache | None = None

    def __enter__(self) -> "AttentionVariants":
        return self

    def __exit__(self, *exc) -> None:
        if self.cache is not None:
            self.cache.__exit__(*exc)
            self.cache = None

    @property
    def prefix_active(self) -> bool:
        return self.cache is not None and self.cache.active

    @property
    def readout_active(self) -> bool:
        return self.readout is not None and self.readout.active

    def _call(self, rows: torch.Tensor) -> torch.Tensor:
        return call_model_autocast(self.model, self.batch.index_rows(rows), self.autocast)

    def _call_selected(self, rows: torch.Tensor) -> torch.Tensor:
        """A forward of ``rows`` through the tap (the prefix cache's upper blocks when it is active)."""
        if self.cache is not None:
            self.cache.select(rows)
        return self._call(rows)

    def original(self, capture_layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``[B, C]`` of the unmodified examples (in chunks), and the attention of ``capture_layer``
        (``[B, H, Tq, Tk]``, gathered over the chunks; the tap must capture that layer) or None. Primes the prefix
        cache."""
        B, T = self.batch.input_ids.shape
        if not self.tap.layers:  # the layer list is needed to plan the cache: one small complete forward
            self._call(torch.zeros(1, dtype=torch.long, device=self.batch.device))
        attentions: list[torch.Tensor] = []
        done = [0]  # rows of the original forward seen so far (the prefix cache's check forward comes after)
        if self.use_readout:
            self.readout = ReadoutCache(self.model, self.tap, self.first_layer, self.batch)

        def rows_forward(rows: torch.Tensor) -> torch.Tensor:
            out = self._call(rows)
            if done[0] < B:  # the chunks of the original forward only
                done[0] += int(rows.shape[0])
                if capture_layer is not None:
                    attentions.append(self.tap.attention(capture_layer))
                if self.readout is not None:
                    self.readout.collect(rows)
            return out

        with self.readout.recording() if self.readout is not None else contextlib.nullcontext():
            if self.use_prefix:
                self.cache = PrefixCache(self.model, self.tap, self.first_layer)
                logits = self.cache.prime(rows_forward, B, self.runner, seq_len=T)
            else:
                logits = self.runner.run(
                    B, lambda s, e: rows_forward(torch.arange(s, e, device=self.batch.device)), seq_len=T
                )
        if self.readout is not None:
            self.readout.verify(logits, self._call_selected)
        attention = torch.cat(attentions) if attentions else None
        return logits, attention

    def run(self, rows: torch.Tensor, interventions: Sequence[tuple[str, Any, dict]]) -> torch.Tensor:
        """Logits of the variants whose source rows are ``rows``, with ``interventions`` — each
        ``(kind, value, kwargs)`` for :meth:`AttentionTap.intervene` (values shaped for these rows) — applied."""
        if self.readout is not None and self.readout.active:
            out = self.readout.run(rows, interventions, through_tap=lambda m: self._through_tap(
                rows[:m], [(kind, _head_rows(value, m), kwargs) for kind, value, kwargs in interventions]))
            if out is not None:
                return out
        return self._through_tap(rows, interventions)

    def _through_tap(self, rows: torch.Tensor, interventions: Sequence[tuple[str, Any, dict]]) -> torch.Tensor:
        added = [self.tap.intervene(kind, value, **kwargs) for kind, value, kwargs in interventions]
        try:
            return self._call_selected(rows)
        finally:
            for iv in added:
                self.tap.remove(iv)


def _head_rows(value: Any, m: int) -> Any:
    """The first ``m`` variants' part of an intervention value (a tensor with one entry per variant)."""
    return value[:m] if isinstance(value, torch.Tensor) and value.dim() >= 1 else value
