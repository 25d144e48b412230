"""How to call a model's ``forward``: which parameter takes what, bound by meaning, and position ids from the mask.

**Binding Captum's ``additional_forward_args``.** Captum calls ``forward_func(inputs, *additional_forward_args)``;
for a HuggingFace model, whose forward's second parameter changes between releases (GPT-2's became ``cache`` in
transformers 5.24), a positional binding would put the attention mask into a cache slot. attnfaith binds each entry
by what it is, never by its position in the model's signature:

* positional entries mean, in order, the **attention mask** (Captum's own HuggingFace examples pass
  ``(attention_mask,)``), the **token type ids** and the **position ids** (:data:`POSITIONAL_MEANING`, HuggingFace
  BERT's order after the ids); each goes to the forward's parameter of that meaning, found by name (the mask under
  any of :data:`MASK_PARAMETERS`). ``token_type_ids`` is ``[B, T]`` and 0/1 like the mask, so neither shape nor
  values could tell the two apart: the meaning is fixed by the position in ``additional_forward_args``;
* an entry that is a mapping ``{name: value}`` is bound by name (to a parameter of the forward, or through its
  ``**kwargs``); ``None`` entries are skipped.

An entry that cannot be placed this way raises :class:`ValueError` naming it (``additional_forward_args[2]``) and
saying how to pass it by name.

**Position ids from the mask.** Models with a learned table of absolute positions that the forward indexes with
``arange(T)`` when no ``position_ids`` are given (BERT, DistilBERT, ALBERT, ELECTRA, GPT-2, GPT-Neo...) give a
left-padded row different numbers from the same row unpadded, so a row's result would depend on its batch-mates.
For such models attnfaith passes ``position_ids = max(cumsum(attention_mask) − 1, 0)`` whenever a batch is
left-padded (as transformers' generation does), recomputed for every variant, so a deleted token's successors move
up one position. The table is recognised by structure, not by name: an ``nn.Embedding`` other than the input
embeddings, without ``padding_idx`` (RoBERTa-style tables with a ``padding_idx`` derive positions from the ids
themselves), with ``max_position_embeddings`` (or ``n_positions``) rows, up to 2 more (BART/OPT offsets).
Rotary and relative schemes (Llama, Qwen2, ModernBERT, DeBERTa, T5) are shift-invariant and left unchanged.
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any, Mapping, Sequence

import torch
from torch import nn

__all__ = [
    "MASK_PARAMETERS",
    "POSITIONAL_MEANING",
    "ForwardSignature",
    "forward_signature",
    "bind_additional_forward_args",
    "absolute_positions",
    "max_positions",
    "position_ids_from_mask",
]

MASK_PARAMETERS: tuple[str, ...] = ("attention_mask", "mask")
"""Names under which a forward takes the 0/1 attention (padding) mask, in order of preference."""

POSITIONAL_MEANING: tuple[str, ...] = ("attention_mask", "token_type_ids", "position_ids")
"""What positional ``additional_forward_args`` entries mean, in order (HuggingFace BERT's order after the ids)."""

_POSITION_CONFIG_KEYS = ("max_position_embeddings", "n_positions", "max_positions")


class ForwardSignature:
    """What a module's ``forward`` takes: its declared parameter names (in order), the names its ``**kwargs`` take,
    and the name of its ids and mask parameters (``None`` when it has none).

    A HuggingFace forward's ``**kwargs`` are options (``TransformersKwargs``: ``output_attentions``...), not inputs:
    any other name passed there is silently dropped, so only those option names count as accepted. A plain module's
    ``**kwargs`` accept any name."""

    def __init__(self, module: nn.Module) -> None:
        try:
            params = inspect.signature(module.forward).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            params = {}
        named = [p for p in params.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        self.names: tuple[str, ...] = tuple(p.name for p in named)
        var_keyword = any(p.kind == p.VAR_KEYWORD for p in params.values())
        options = _transformers_options(module) if var_keyword else None
        self.open_kwargs: bool = var_keyword and options is None
        self.kwarg_names: frozenset[str] = options or frozenset()
        positional = [p.name for p in named if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        # the ids: ``input_ids`` by name, else the first positional parameter (Captum's ``inputs``)
        self.ids: str | None = "input_ids" if "input_ids" in self.names else (positional[0] if positional else None)
        self.mask: str | None = next((n for n in MASK_PARAMETERS if n in self.names), None)
        if self.mask is None and self.open_kwargs:
            self.mask = MASK_PARAMETERS[0]

    def accepts(self, name: str) -> bool:
        """Whether ``name`` can be passed as a keyword and is used."""
        return name in self.names or name in self.kwarg_names or self.open_kwargs


def _transformers_options(module: nn.Module) -> frozenset[str] | None:
    """The option names of a transformers model's ``**kwargs`` (``TransformersKwargs``), or ``None`` for a module
    that is not a transformers model."""
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover
        return None
    if not isinstance(module, PreTrainedModel):
        return None
    try:
        from transformers.utils.generic import TransformersKwargs

        return frozenset(getattr(TransformersKwargs, "__annotations__", {}))
    except ImportError:  # pragma: no cover - moved upstream: accept none rather than guess
        return frozenset()


_SIGNATURES: "weakref.WeakKeyDictionary[nn.Module, ForwardSignature]" = weakref.WeakKeyDictionary()


def forward_signature(module: nn.Module) -> ForwardSignature:
    """The (cached) :class:`ForwardSignature` of ``module``."""
    sig = _SIGNATURES.get(module)
    if sig is None:
        sig = _SIGNATURES[module] = ForwardSignature(module)
    return sig


def bind_additional_forward_args(model: nn.Module, args: Any) -> tuple[Any, dict[str, Any]]:
    """Bind Captum-style ``additional_forward_args`` to ``model``'s forward by meaning (see the module docstring).

    Positional entry ``i`` means :data:`POSITIONAL_MEANING` ``[i]`` (attention mask, token type ids, position ids);
    a mapping entry binds by name. Returns ``(attention_mask or None, {parameter name: value} for the rest)``.

    Raises:
        ValueError: an entry that cannot be placed (named ``additional_forward_args[i]``), or a name given twice.
        TypeError: a mapping entry whose keys are not strings.
    """
    entries: Sequence[Any] = args if isinstance(args, (tuple, list)) else (args,)
    sig = forward_signature(model)
    owner = f"{type(model).__name__}.forward"
    bound: dict[str, Any] = {}
    for i, value in enumerate(entries):
        where = f"additional_forward_args[{i}]"
        if value is None:
            continue
        if isinstance(value, Mapping):
            pairs = list(value.items())
            for name, _ in pairs:
                if not isinstance(name, str):
                    raise TypeError(f"{where}: keys must be parameter names (str), got {type(name).__name__}")
                if not sig.accepts(name):
                    raise ValueError(f"{where}: {owner} has no parameter {name!r} (it takes {', '.join(sig.names)})")
        elif i < len(POSITIONAL_MEANING):
            meaning = POSITIONAL_MEANING[i]
            # a declared parameter of that meaning: ``**kwargs`` of a HuggingFace forward are options, not inputs
            name = sig.mask if meaning == "attention_mask" else (meaning if meaning in sig.names else None)
            if name is None:
                raise ValueError(
                    f"{where} stands for {meaning} (positional entries mean {', '.join(POSITIONAL_MEANING)}, in "
                    f"that order), but {owner} takes no such parameter; pass it by name, e.g. "
                    f"additional_forward_args=(attention_mask, {{'name': value}}), or pass inputs as a mapping"
                )
            pairs = [(name, value)]
        else:
            raise ValueError(
                f"{where} cannot be placed: only the first {len(POSITIONAL_MEANING)} positional entries have a "
                f"meaning ({', '.join(POSITIONAL_MEANING)}); pass it by name, e.g. "
                f"additional_forward_args=(attention_mask, {{'name': value}}), or pass inputs as a mapping"
            )
        for name, v in pairs:
            key = "attention_mask" if name == sig.mask else name
            if key in bound:
                raise ValueError(f"{where}: {name!r} is given twice")
            bound[key] = v
    return bound.pop("attention_mask", None), bound


_ABSOLUTE: "weakref.WeakKeyDictionary[nn.Module, str | None]" = weakref.WeakKeyDictionary()


def absolute_positions(model: nn.Module) -> str | None:
    """How ``model`` places tokens, by the structural rule of the module docstring. Cached per model.

    Returns ``"position_ids"`` (a learned absolute table and the forward takes ``position_ids``: pass them from the
    mask), ``"fixed"`` (a learned absolute table the forward always indexes from 0: left padding shifts every real
    token, which cannot be undone), or ``None`` (no such table: positions are relative, rotary, derived from the ids,
    or absent)."""
    if model not in _ABSOLUTE:
        _ABSOLUTE[model] = _find_absolute_positions(model)
    return _ABSOLUTE[model]


def _position_tables(model: nn.Module) -> list[tuple[nn.Embedding, int]]:
    """The learned absolute-position tables of ``model`` and the positions each holds: every ``nn.Embedding`` other
    than the input embeddings with ``n`` to ``n + 2`` rows, ``n`` a configured maximum (BART/OPT keep 2 offset rows);
    a table with a ``padding_idx`` (RoBERTa-style, positions counted after it) holds ``rows − padding_idx − 1``."""
    config = getattr(model, "config", None)
    sizes = {getattr(config, k) for k in _POSITION_CONFIG_KEYS if isinstance(getattr(config, k, None), int)}
    if not sizes:
        return []
    get_inputs = getattr(model, "get_input_embeddings", None)
    try:
        word = get_inputs() if callable(get_inputs) else None
    except (NotImplementedError, AttributeError):
        word = None
    tables = []
    for module in model.modules():
        if isinstance(module, nn.Embedding) and module is not word and any(
            0 <= module.num_embeddings - n <= 2 for n in sizes
        ):
            pad = module.padding_idx
            tables.append((module, module.num_embeddings - (pad + 1 if pad is not None else 0)))
    return tables


def _find_absolute_positions(model: nn.Module) -> str | None:
    if not any(table.padding_idx is None for table, _ in _position_tables(model)):
        return None
    return "position_ids" if "position_ids" in forward_signature(model).names else "fixed"


def max_positions(model: nn.Module) -> tuple[int, str] | None:
    """The most tokens one input of ``model`` can hold, and where that number comes from; None without a limit.

    The smallest of the positions each learned absolute-position table holds (:func:`_position_tables`) and the
    configured ``max_position_embeddings`` / ``n_positions`` / ``max_positions`` (models with rotary positions are
    held to it too). Models without either (T5's relative buckets, the reference BiLSTM) have no limit."""
    names = {id(m): name for name, m in model.named_modules()}
    found = []
    for table, n in _position_tables(model):
        pad = f" after padding index {table.padding_idx}" if table.padding_idx is not None else ""
        found.append((n, f"{names[id(table)]}: {table.num_embeddings} rows{pad}"))
    config = getattr(model, "config", None)
    for key in _POSITION_CONFIG_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            found.append((value, f"config.{key}"))
    return min(found, key=lambda f: f[0]) if found else None


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``max(cumsum(attention_mask, -1) − 1, 0)``: each real token's index among the real tokens of its row."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_(min=0)
