"""Which attention layers, heads and query row an evaluator reads or changes: one function per job.

Validation (at construction, before any model runs; ``TypeError``/``ValueError`` naming the argument):

* :func:`check_layer`: one layer, an int (negative counts from the last attention layer);
* :func:`check_layers`: an int, a non-empty list of ints, or ``"all"``;
* :func:`check_heads`: None (every head), an int or a non-empty list of ints;
* :func:`check_query`: ``"auto"``, ``"cls"``, ``"last"``, ``"mean"`` or an int row (``single_row=True``: not
  ``"mean"``, for evaluators that need one row).

Resolution (against the model's attention layers, as :class:`attnfaith.AttentionTap` lists them in call order):

* :func:`probe_layers`: the layers, from one forward of one row;
* :func:`resolve_layers`: a layer choice → sorted non-negative indices;
* :func:`check_heads_for`: the heads exist in every chosen layer;
* :func:`auto_query` / :func:`resolve_query`: ``"auto"`` → ``"last"`` when a chosen layer is causal or
  cross-attention (decoder-only and encoder–decoder classifiers read the last token), else ``"cls"`` (the first real
  token);
* :func:`query_index`: the row a query rule picks, per example;
* :func:`resolve_attention_layers`: probe, resolve, check heads and resolve ``"auto"`` in one call.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import nn

from attnfaith._inputs import Batch, call_model
from attnfaith.attention import AttentionLayer, AttentionTap

__all__ = [
    "check_layer", "check_layers", "check_heads", "check_query", "probe_layers", "resolve_layers",
    "check_heads_for", "auto_query", "resolve_query", "query_index", "resolve_attention_layers",
]

_QUERIES = ("auto", "cls", "last", "mean")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_layer(layer: Any, name: str = "layer") -> int:
    """One attention layer: an int (negative counts from the last layer). ``TypeError`` naming ``name``."""
    if not _is_int(layer):
        raise TypeError(f"{name} must be an int (negative counts from the last attention layer), got {layer!r}")
    return layer


def check_layers(layers: Any, name: str = "layer") -> Any:
    """A layer choice: an int (negative counts from the end), a non-empty sequence of ints (returned as a list), or
    ``"all"``."""
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"{name} must be an int, a list of ints or 'all', got {layers!r}")
        return layers
    if isinstance(layers, bool):
        raise TypeError(f"{name} must be an int, a list of ints or 'all', got a bool")
    if isinstance(layers, int):
        return layers
    if isinstance(layers, Iterable):
        seq = list(layers)
        if not seq or not all(_is_int(i) for i in seq):
            raise ValueError(f"{name} must be an int, a non-empty list of ints or 'all', got {layers!r}")
        return seq
    raise TypeError(f"{name} must be an int, a list of ints or 'all', got {type(layers).__name__}")


def check_heads(heads: Any, name: str = "heads") -> Any:
    """A head choice: None (every head), an int or a non-empty sequence of ints (returned as a list)."""
    if heads is None:
        return None
    if isinstance(heads, bool):
        raise TypeError(f"{name} must be None, an int or a list of ints, got a bool")
    if isinstance(heads, int):
        return heads
    if isinstance(heads, Iterable) and not isinstance(heads, str):
        seq = list(heads)
        if not seq or not all(_is_int(h) for h in seq):
            raise ValueError(f"{name} must be None, an int or a non-empty list of ints, got {heads!r}")
        return seq
    raise TypeError(f"{name} must be None, an int or a list of ints, got {heads!r}")


def check_query(query: Any, *, single_row: bool = False, name: str = "query") -> Any:
    """A query rule: ``"auto"``, ``"cls"``, ``"last"``, ``"mean"`` (the mean over the real query rows; refused
    with ``single_row=True``) or an int row. ``ValueError`` naming ``name`` for another string, ``TypeError`` for
    another type."""
    allowed = tuple(q for q in _QUERIES if not (single_row and q == "mean"))
    if (isinstance(query, str) and query in allowed) or _is_int(query):
        return query
    if not isinstance(query, str):
        raise TypeError(f"{name} must be {', '.join(repr(q) for q in allowed)} or an int, got {query!r}")
    extra = " ('mean' is not a single row)" if single_row and query == "mean" else ""
    raise ValueError(f"{name} must be {', '.join(repr(q) for q in allowed)} or an int, got {query!r}{extra}")


def probe_layers(model: nn.Module, batch: Batch, modules: Sequence[str] | None = None) -> tuple[AttentionLayer, ...]:
    """The attention layers of ``model``, from one forward of the first row of ``batch`` under a tap."""
    with torch.no_grad(), AttentionTap(model, capture=None, modules=modules) as tap:
        call_model(model, batch.index_rows(torch.zeros(1, dtype=torch.long, device=batch.device)))
    return tap.layers


def resolve_layers(spec: Any, infos: Sequence[AttentionLayer], name: str = "layer", *,
                   all_means: str = "input_keys") -> list[int]:
    """Layer indices (sorted, non-negative) for a :func:`check_layers`-validated ``spec``.

    ``"all"`` with ``all_means="input_keys"``: the layers whose keys are the input tokens (every layer, except in an
    encoder–decoder model, where the decoder's causal self-attention is left out); ``all_means="every"``: every layer.
    ``ValueError`` naming ``name`` for an index out of range or a model without reachable attention.
    """
    n = len(infos)
    if n == 0:
        raise ValueError(f"{name}: the model has no attention layer the tap can reach")
    if spec == "all":
        if all_means == "input_keys" and any(l.kind == "cross" for l in infos):
            return [i for i, l in enumerate(infos) if l.kind == "cross" or not l.causal]
        return list(range(n))
    seq = [spec] if isinstance(spec, int) else list(spec)
    out = []
    for i in seq:
        if not -n <= i < n:
            raise ValueError(f"{name}={spec!r} is out of range: the model has {n} attention layers")
        out.append(i % n)
    return sorted(set(out))


def check_heads_for(heads: Any, infos: Sequence[AttentionLayer], layers: Sequence[int], name: str = "heads") -> None:
    """``ValueError`` naming ``name`` when a head of ``heads`` (None: every head) is out of range in a layer of
    ``layers``."""
    if heads is None:
        return
    seq = [heads] if isinstance(heads, int) else list(heads)
    for layer in layers:
        h = infos[layer].num_heads
        bad = [x for x in seq if not -h <= x < h]
        if bad:
            raise ValueError(f"{name}={heads!r} is out of range: attention layer {layer} has {h} heads")


def auto_query(infos: Sequence[AttentionLayer], layers: Sequence[int]) -> str:
    """``"last"`` if any of ``layers`` (indices into ``infos``) is causal or cross-attention, else ``"cls"``."""
    chosen = [infos[i] for i in layers if 0 <= i < len(infos)]
    return "last" if any(l.causal or l.kind == "cross" for l in chosen) else "cls"


def resolve_query(query: Any, infos: Sequence[AttentionLayer], layers: Sequence[int]) -> Any:
    """``query`` with ``"auto"`` resolved for ``layers`` (:func:`auto_query`); any other value as given."""
    return auto_query(infos, layers) if query == "auto" else query


def query_index(query: Any, Tq: int, attention_mask: torch.Tensor) -> torch.Tensor:
    """LongTensor ``[B]``: the query row the rule picks per example, among ``Tq`` rows — ``"cls"``: the first
    position with ``attention_mask != 0``; ``"last"``: the last such position; an int: that row (negative from the
    end; ``ValueError`` out of range). A layer with one query row (``Tq == 1``) always gives row 0. The rows are those
    :func:`attnfaith.attr._base.select_query` reads."""
    B = attention_mask.shape[0]
    device = attention_mask.device
    if Tq == 1:
        return torch.zeros(B, dtype=torch.long, device=device)
    m = attention_mask[:, :Tq] != 0
    if query == "cls":
        return m.long().argmax(dim=-1)
    if query == "last":
        pos = torch.arange(Tq, device=device).expand(B, Tq)
        return torch.where(m, pos, torch.zeros_like(pos)).max(dim=-1).values
    if not _is_int(query):
        raise ValueError(f"query must be 'cls', 'last' or an int row here, got {query!r}")
    if not -Tq <= query < Tq:
        raise ValueError(f"query: row {query} is out of range for {Tq} query positions")
    return torch.full((B,), query % Tq, dtype=torch.long, device=device)


def resolve_attention_layers(model: nn.Module, batch: Batch, layer: Any, heads: Any,
                             modules: Sequence[str] | None = None, query: Any = None, *, name: str = "layer",
                             all_means: str = "input_keys") -> tuple[list[int], Any]:
    """``(layers, query)`` of an evaluator on ``batch``: the model's attention layers (:func:`probe_layers`), the
    validated ``layer`` choice resolved against them (:func:`resolve_layers`, ``ValueError`` naming ``name``),
    ``heads`` checked against every chosen layer (:func:`check_heads_for`), and ``query`` resolved for those layers
    (:func:`resolve_query`; None is returned as None)."""
    infos = probe_layers(model, batch, modules)
    layers = resolve_layers(layer, infos, name, all_means=all_means)
    check_heads_for(heads, infos, layers, "heads")
    return layers, resolve_query(query, infos, layers)
