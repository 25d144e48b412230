"""Prefix caching: run only the layers an attention intervention can change.

When every intervention of an evaluation acts on attention layer ``L`` or above, the hidden states that enter the
block holding layer ``L`` are the same for every variant of an example. :class:`PrefixCache` computes the output of
the block before it once per example (the *prime* forward, a normal forward of the original inputs), then, during
the variant forwards, replaces the forward of every block below with a stand-in that returns that cached output
(indexed by the example each variant row comes from). Embeddings, mask construction and the classifier head still
run; the skipped blocks cost nothing. Last-layer interventions then cost about one layer per variant.

Generic for any model whose blocks sit in an ``nn.ModuleList`` (every HuggingFace transformer, custom models too):
the list is found from the intervened layer's module name. It does not apply, and the caller falls back to full
forwards, when the intervened layer is in the first block, when blocks share one module (ALBERT), or when the
partial forward of the prime batch does not reproduce the full forward's logits (checked once, to 1e-4 relative).

Threads: the stand-ins (and the hook that records the prime forward) act only on forwards in the thread that primed
the cache. While any cache is active, each skipped block's ``forward`` is shadowed by one shared dispatcher (installed
by the first cache on the block, removed by the last) that calls the block's own forward in every other thread, so
another thread running the same model meanwhile computes every block as usual.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import torch
from torch import nn

from attnfaith import _state
from attnfaith._inputs import logits_of
from attnfaith._state import local_forward_hook
from attnfaith.attention.model_facts import model_device
from attnfaith.attention.tap import AttentionTap

__all__ = ["PrefixCache"]

_PREFIX = "prefix"  # the kind of claim (attnfaith._state.claim) a cache holds on the blocks it skips


def _index_rows(obj: Any, rows: torch.Tensor, batch_size: int) -> Any:
    """Select ``rows`` along the batch axis of every tensor in ``obj`` whose first axis is the prime batch."""
    if isinstance(obj, torch.Tensor):
        if obj.dim() >= 1 and obj.shape[0] == batch_size:
            return obj.index_select(0, rows)
        return obj
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_index_rows(o, rows, batch_size) for o in obj)
    if isinstance(obj, list):
        return [_index_rows(o, rows, batch_size) for o in obj]
    if isinstance(obj, dict) and type(obj) is dict:
        return {k: _index_rows(v, rows, batch_size) for k, v in obj.items()}
    return obj


class PrefixCache:
    """Skip the blocks below the first intervened attention layer during variant forwards.

    Usage (inside an active tap, after at least one complete forward so the layers are known)::

        with PrefixCache(model, tap, first_layer=L) as cache:
            logits0 = cache.prime(lambda rows: call_model(model, batch.index_rows(rows)), B, runner)
            cache.select(rows)            # rows: LongTensor, the prime-batch row of each variant row
            logits = call_model(model, batch.index_rows(rows))     # runs blocks >= L only when cache.active

    ``cache.active`` is False when the prefix cache does not apply (``cache.reason`` says why) or the check after
    priming failed: forwards are then complete forwards.
    """

    def __init__(self, model: nn.Module, tap: AttentionTap, first_layer: int) -> None:
        self.model = model
        self.tap = tap
        self.first_layer = first_layer
        self.applicable = False
        self.active = False
        self.reason = ""
        self._shared: list[tuple] = []
        self._stubbed: list[nn.Module] = []
        self._cached: Any = None
        self._prime_size = 0
        self._rows: torch.Tensor | None = None
        self._plan()

    # ---------------------------------------------------------------- planning
    def _plan(self) -> None:
        layers = self.tap.layers
        if not layers:
            self.reason = "the layers are not known yet"
            return
        if not 0 <= self.first_layer < len(layers):
            self.reason = f"layer {self.first_layer} out of range"
            return
        target = layers[self.first_layer]
        if "#" in target.name:
            self.reason = "the layer's module runs several times per forward (shared weights)"
            return
        modules = dict(self.model.named_modules())
        parts = target.name.split(".")
        # the shallowest ModuleList ancestor in which the target's block has index >= 1
        for depth in range(1, len(parts)):
            parent_name = ".".join(parts[:depth])
            parent = modules.get(parent_name)
            if isinstance(parent, nn.ModuleList) and parts[depth].isdigit() and int(parts[depth]) >= 1:
                self._plan_list(parent_name, parent, int(parts[depth]), layers)
                return
        self.reason = "no block list found below the intervened layer"

    def _plan_list(self, list_name: str, blocks: nn.ModuleList, idx: int, layers) -> None:
        stubbed = [blocks[i] for i in range(idx)]
        if len({id(b) for b in blocks}) != len(blocks):
            self.reason = "blocks share modules"
            return
        prefixes = [f"{list_name}.{i}." for i in range(idx)]
        # every attention layer inside a stubbed block must come before the first intervened layer
        for layer in layers:
            if any(layer.name.startswith(p) for p in prefixes) and layer.index >= self.first_layer:
                self.reason = "an intervened layer sits inside a block that would be skipped"
                return
        self._stubbed = stubbed
        self._last_stub = blocks[idx - 1]
        self.block_list = list_name
        self.block_index = idx
        self.applicable = True

    # ---------------------------------------------------------------- context
    def __enter__(self) -> "PrefixCache":
        return self

    def __exit__(self, *exc) -> None:
        self._unstub()
        self.tap.set_partial(False)
        self._cached = None
        self.active = False

    def _stub(self) -> None:
        """Route the skipped blocks to the stand-in, for forwards in the calling thread only (see the module
        docstring: other threads running the model meanwhile run every block)."""
        _state.claim(_PREFIX, self._stubbed, self,
                     "another PrefixCache is already active on these blocks in this thread")
        for block in self._stubbed:
            key = ("prefix-stub", id(block))
            _state.share(key, partial(_state.shadow_forward, block, _PREFIX))
            self._shared.append(key)
        self.tap.set_partial(True)

    def _unstub(self) -> None:
        for key in reversed(self._shared):
            _state.unshare(key)
        self._shared = []
        _state.release(_PREFIX, self)

    def stand_in(self, original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The skipped blocks' forward (:func:`attnfaith._state.shadow_forward`): the cached output of the rows
        selected by :meth:`select`."""
        if self._rows is None:
            raise RuntimeError("PrefixCache.select(rows) must be called before a variant forward")
        return _index_rows(self._cached, self._rows, self._prime_size)

    # ---------------------------------------------------------------- use
    def prime(self, run_rows, batch_size: int, runner=None, seq_len: int = 1):
        """Run the original forward of the prime batch and cache the input of the first kept block.

        ``run_rows(rows)`` runs the model on the prime batch's rows ``rows`` (LongTensor) and returns its output;
        ``runner`` (an :class:`attnfaith.engine.VariantRunner`, optional) chunks the ``batch_size`` rows. Then a
        partial forward of the first rows is checked against the full forward; on any mismatch the cache stays
        inactive and later forwards are complete. Returns the full forward's outputs, concatenated.
        """
        recorded: list[tuple[Any, int]] = []
        sizes: list[int] = []

        def grab(module, args, output):
            recorded.append(output)

        def chunk(start: int, stop: int):
            sizes.append(stop - start)
            return logits_of(run_rows(torch.arange(start, stop, device=model_device(self.model))))

        if not self.applicable:
            return _run(chunk, batch_size, runner, seq_len)
        with local_forward_hook(self._last_stub, grab):
            full = _run(chunk, batch_size, runner, seq_len)
        if len(recorded) != len(sizes):
            self.reason = "the block before the intervened layer did not run once per forward"
            return full
        self._cached = _concat_outputs(recorded, sizes)
        self._prime_size = batch_size
        self._stub()
        k = min(batch_size, 4)
        try:
            rows = torch.arange(k, device=full.device)
            self.select(rows)
            partial = logits_of(run_rows(rows))
        except Exception as exc:  # the model cannot run with stand-ins: fall back to full forwards
            self._fallback(f"partial forward failed ({type(exc).__name__}: {exc})")
            return full
        a = full[:k]
        scale = a.abs().max().clamp_min(1.0)
        if partial.shape != a.shape or not bool((partial - a).abs().max() <= 1e-4 * scale):
            self._fallback("the partial forward does not reproduce the full forward")
            return full
        self.active = True
        return full

    def _fallback(self, reason: str) -> None:
        self._unstub()
        self.tap.set_partial(False)
        self._cached = None
        self.reason = reason

    def select(self, rows: torch.Tensor) -> None:
        """Variant row ``i`` of the next forward comes from prime-batch row ``rows[i]``."""
        self._rows = rows


def _run(chunk, n: int, runner, seq_len: int):
    if runner is None:
        return chunk(0, n)
    return runner.run(n, chunk, seq_len=seq_len, device=None)


def _concat_outputs(outputs: list, sizes: list[int]) -> Any:
    """Concatenate per-chunk block outputs along the batch axis (tensors whose first axis is each chunk's size)."""
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        if all(isinstance(o, torch.Tensor) and o.dim() >= 1 and o.shape[0] == s for o, s in zip(outputs, sizes)):
            return torch.cat(outputs, dim=0) if len(outputs) > 1 else first
        return first
    if isinstance(first, tuple) and not hasattr(first, "_fields"):
        return tuple(_concat_outputs([o[i] for o in outputs], sizes) for i in range(len(first)))
    if isinstance(first, list):
        return [_concat_outputs([o[i] for o in outputs], sizes) for i in range(len(first))]
    if isinstance(first, dict) and type(first) is dict:
        return {key: _concat_outputs([o[key] for o in outputs], sizes) for key in first}
    return first
