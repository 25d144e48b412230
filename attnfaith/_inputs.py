"""Turning what users pass (Captum-style tensors, tokenizer output or raw texts) into one normalised batch, and
calling the model (or the user's Captum ``forward_func``) on it.

Three conventions are accepted everywhere ``inputs`` is:

* Captum's: ``inputs`` is a LongTensor of token ids ``[B, T]`` and ``additional_forward_args`` holds the further
  arguments, bound by meaning (:func:`attnfaith.attention.forward_args.bind_additional_forward_args`): positional
  entries are the attention mask, then ``token_type_ids``, then ``position_ids``; a mapping entry binds by name. A
  single tensor is taken as a 1-tuple.
* HuggingFace's: ``inputs`` is a mapping such as a tokenizer's ``BatchEncoding`` with ``input_ids``,
  ``attention_mask`` and any further model arguments. A ``special_tokens_mask`` entry (tokenizers give it with
  ``return_special_tokens_mask=True``) says which positions are special; it is not passed to the model.
* raw text: a ``str``, a list of ``str``, or a list of ``(text, text_pair)`` pairs, together with ``tokenizer=``:
  tokenized as ``tokenizer(texts, padding=True, return_tensors="pt", return_special_tokens_mask=True)``, cut to the
  positions the model takes (:func:`attnfaith.attention.forward_args.max_positions`; a :class:`UserWarning` says
  which texts were cut) (:func:`attnfaith._text.tokenize_texts`).

Items (the positions every metric scores) are the real tokens: ``attention_mask == 1`` and not special. Special
ids come, in order of preference, from the ``special_tokens_mask`` of the inputs, from ``special_ids`` /
``tokenizer`` arguments, from the model (``model.special_token_ids``, the config's pad/bos/eos/sep/cls/mask ids), and
for a model loaded from a local folder, from that folder's tokenizer.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, replace
import inspect
import warnings
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from attnfaith._text import is_text_input, tokenize_texts
from attnfaith.attention.forward_args import (
    POSITIONAL_MEANING,
    absolute_positions,
    bind_additional_forward_args,
    forward_signature,
    max_positions,
    position_ids_from_mask,
)
from attnfaith.attention.model_facts import input_embedding_module

__all__ = [
    "Batch", "prepare_batch", "logits_of", "probs_of", "check_target", "resolve_target", "call_model", "special_ids_of",
    "UserForward", "positional_capacity", "FORWARD_OUTPUTS", "FORWARD_INPUTS",
]

#: what a user's ``forward_func`` returns: ``"auto"`` (see :class:`UserForward`), ``"logits"`` or ``"probs"``
FORWARD_OUTPUTS = ("auto", "logits", "probs")
#: what a user's ``forward_func`` takes first: ``"auto"`` (by the name of its first parameter), ``"ids"`` or
#: ``"embeddings"``
FORWARD_INPUTS = ("auto", "ids", "embeddings")

_SPECIAL_CONFIG_KEYS = (
    "pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id", "mask_token_id",
    "decoder_start_token_id",
)


@dataclass
class Batch:
    """A normalised batch: ids, mask, the further per-token and other model arguments, and which positions count.

    Attributes:
        input_ids: LongTensor ``[B, T]``.
        attention_mask: LongTensor ``[B, T]`` (1 real, 0 padding).
        token_args: further model arguments shaped ``[B, T]`` (token_type_ids...): they follow the tokens when
            tokens are deleted or rows repeated.
        row_args: further arguments with a leading batch axis of another shape (repeated with rows).
        const_args: arguments without a batch axis (passed unchanged).
        items: BoolTensor ``[B, T]``: the positions every metric scores (real, non-special tokens, or the
            caller's mask).
        left_padded: True when padding sits on the left (decoder classifiers).
        forward: the user's Captum ``forward_func`` the model is called through (:class:`UserForward`), or None:
            the model itself. Every batch derived from this one (rows, deletions, devices) keeps it.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    items: torch.Tensor
    token_args: dict[str, torch.Tensor] = field(default_factory=dict)
    row_args: dict[str, torch.Tensor] = field(default_factory=dict)
    const_args: dict[str, Any] = field(default_factory=dict)
    left_padded: bool = False
    forward: "UserForward | None" = None

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    @property
    def length(self) -> int:
        return self.input_ids.shape[1]

    @property
    def device(self) -> torch.device:
        return self.input_ids.device

    @property
    def n_items(self) -> torch.Tensor:
        return self.items.sum(dim=-1)

    def index_rows(self, rows: torch.Tensor) -> "Batch":
        """The batch made of rows ``rows`` (LongTensor of row indices, repeats allowed)."""
        return replace(
            self,
            input_ids=self.input_ids.index_select(0, rows),
            attention_mask=self.attention_mask.index_select(0, rows),
            items=self.items.index_select(0, rows),
            token_args={k: v.index_select(0, rows) for k, v in self.token_args.items()},
            row_args={k: v.index_select(0, rows) for k, v in self.row_args.items()},
        )

    def with_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, items: torch.Tensor,
                    token_args: dict[str, torch.Tensor] | None = None) -> "Batch":
        return replace(self, input_ids=input_ids, attention_mask=attention_mask, items=items,
                       token_args=self.token_args if token_args is None else token_args)

    def truncate(self, width: int) -> "Batch":
        """The first ``width`` columns (for right-padded rows that are all at most ``width`` long, the columns cut
        are padding)."""
        if width >= self.length:
            return self
        return self.with_tokens(self.input_ids[:, :width], self.attention_mask[:, :width], self.items[:, :width],
                                {k: v[:, :width] for k, v in self.token_args.items()})

    def to(self, device) -> "Batch":
        return replace(
            self,
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            items=self.items.to(device),
            token_args={k: v.to(device) for k, v in self.token_args.items()},
            row_args={k: v.to(device) for k, v in self.row_args.items()},
        )


def call_model(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Run the model on the batch and return its logits ``[B, C]``.

    With ``batch.forward`` set (an evaluator built with ``forward_func=``), the user's function is called instead
    (:class:`UserForward`). Otherwise the ids go to the forward's ``input_ids`` (else its first positional parameter), the mask to its mask parameter
    (:data:`~attnfaith.attention.forward_args.MASK_PARAMETERS`), the other arguments by name. On a left-padded batch
    of a model with learned absolute positions, ``position_ids`` are derived from the mask (unless given), so a
    row's numbers do not depend on the padding its batch-mates impose."""
    if batch.forward is not None:
        return batch.forward(batch)
    sig = forward_signature(model)
    kwargs = {**batch.token_args, **batch.row_args, **batch.const_args}
    if sig.mask is not None:
        kwargs[sig.mask] = batch.attention_mask
    if batch.left_padded and "position_ids" not in kwargs and absolute_positions(model) == "position_ids":
        kwargs["position_ids"] = position_ids_from_mask(batch.attention_mask)
    if sig.ids == "input_ids":
        return logits_of(model(input_ids=batch.input_ids, **kwargs))
    return logits_of(model(batch.input_ids, **kwargs))


def positional_capacity(func: Callable) -> int | None:
    """How many positional arguments ``func`` takes after its first (its inputs), as Captum calls a
    ``forward_func``: ``func(inputs, *additional_forward_args)``; None when it takes ``*args`` (any number) or has no
    signature to read."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None
    if not params or any(p.kind == p.VAR_POSITIONAL for p in params):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return max(len(positional) - 1, 0)


class UserForward:
    """A Captum ``forward_func`` that attnfaith calls in place of the model (``Evaluator(model,
    forward_func=...)``): every perturbed input of an evaluation goes through it, while the attention is still read
    and changed inside ``model``, which the function must call.

    The function is called as Captum calls it, ``func(inputs, *additional_forward_args)``:

    * ``inputs`` are the token ids ``[B, T]``, or (``inputs="embeddings"``, or ``"auto"`` and a first parameter whose
      name contains ``embed``, e.g. ``inputs_embeds``) the model's input token embeddings of those ids ``[B, T, D]``
      (:func:`attnfaith.attention.model_facts.input_embedding_module`), so deleted or replaced tokens reach it as
      their embeddings;
    * then the attention mask, the token type ids and the position ids (of the batch; position ids derived from the
      mask for left padding), in that order, as many as it takes (all for ``*args``; trailing ones the batch lacks
      left out); further model arguments of the inputs (a tokenizer mapping's extra keys) by name.

    Its output (a tensor, or an object with ``.logits``) is read as ``output``: ``"logits"``, ``"probs"`` (a
    probability per class; ``[B]`` or ``[B, 1]``: the probability of class 1) or ``"auto"``: probabilities when, on
    the first call, every entry is in ``[0, 1]`` and every row of two or more classes sums to 1 (±1e-3), else logits
    (one output per row is read as a logit: say ``output="probs"`` for a sigmoid). Probabilities ``p`` are turned
    into the logits ``log p`` (one output: ``log p − log(1 − p)``), whose softmax (sigmoid) is ``p`` again, so every
    metric sees the distribution the function returned.
    """

    def __init__(self, func: Callable, model: nn.Module, *, output: str = "auto", inputs: str = "auto") -> None:
        if not callable(func):
            raise TypeError(f"forward_func must be callable, got {type(func).__name__}")
        if isinstance(func, UserForward):
            func = func.func
        if output not in FORWARD_OUTPUTS:
            raise ValueError(f"forward_output must be one of {FORWARD_OUTPUTS}, got {output!r}")
        if inputs not in FORWARD_INPUTS:
            raise ValueError(f"forward_inputs must be one of {FORWARD_INPUTS}, got {inputs!r}")
        self.func = func
        self.output = output
        self._resolved = None if output == "auto" else output
        try:
            params = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError):  # pragma: no cover
            params = []
        first = params[0].name if params and params[0].kind != params[0].VAR_POSITIONAL else ""
        self.inputs = inputs if inputs != "auto" else ("embeddings" if "embed" in first.lower() else "ids")
        self.capacity = positional_capacity(func)
        self._names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        self._any_keyword = any(p.kind == p.VAR_KEYWORD for p in params)
        self.embedding: nn.Module | None = None
        if self.inputs == "embeddings":
            try:
                self.embedding = input_embedding_module(model)
            except TypeError:
                raise ValueError(
                    f"forward_func takes embeddings (its first parameter is {first!r}), but {type(model).__name__} "
                    "has no get_input_embeddings() to embed the perturbed token ids with; give a forward_func on "
                    "token ids (or forward_inputs='ids' if its first parameter takes ids)"
                ) from None
        self.model = model

    def __repr__(self) -> str:
        return f"UserForward({getattr(self.func, '__name__', self.func)!r}, inputs={self.inputs!r}, output={self.output!r})"

    def arguments(self, batch: Batch) -> tuple[tuple, dict[str, Any]]:
        """The positional ``additional_forward_args`` and the keyword arguments ``func`` gets for ``batch``."""
        position_ids = batch.token_args.get("position_ids")
        if position_ids is None and batch.left_padded and absolute_positions(self.model) is not None:
            position_ids = position_ids_from_mask(batch.attention_mask)
        values = [batch.attention_mask, batch.token_args.get("token_type_ids"), position_ids]
        args = values if self.capacity is None else values[: self.capacity]
        while args and args[-1] is None:
            args.pop()
        named = {k: v for part in (batch.token_args, batch.row_args, batch.const_args) for k, v in part.items()
                 if k not in POSITIONAL_MEANING}
        refused = [k for k in named if k not in self._names and not self._any_keyword]
        if refused:
            raise ValueError(
                f"inputs[{refused[0]!r}]: the forward_func takes no parameter of that name (it is called as "
                "forward_func(inputs, attention_mask, token_type_ids, position_ids) with as many of these as it takes)"
            )
        return tuple(args), named

    def __call__(self, batch: Batch) -> torch.Tensor:
        """The logits ``[B, C]`` of ``func`` on ``batch`` (see the class docstring)."""
        args, named = self.arguments(batch)
        first = batch.input_ids if self.embedding is None else self.embedding(batch.input_ids)
        out = logits_of(self.func(first, *args, **named))
        if out.dim() == 1:
            out = out[:, None]
        if out.dim() != 2 or out.shape[0] != batch.size:
            raise ValueError(f"forward_func returned shape {tuple(out.shape)} for {batch.size} inputs; expected "
                             "[batch, classes] (logits or probabilities)")
        mode = self._resolved
        if mode is None:
            mode = self._resolved = "probs" if _looks_like_probs(out) else "logits"
        return _logits_from_probs(out) if mode == "probs" else out


def _looks_like_probs(out: torch.Tensor) -> bool:
    """Every entry in [0, 1] and, for two or more classes, every row summing to 1 (±1e-3)."""
    x = out.detach().float()
    if out.shape[-1] < 2 or not bool(((x >= 0) & (x <= 1)).all()):
        return False
    return bool(((x.sum(-1) - 1).abs() <= 1e-3).all())


def _logits_from_probs(p: torch.Tensor) -> torch.Tensor:
    """Logits whose :func:`probs_of` is ``p``: ``log p``; one output: ``log p − log(1 − p)``."""
    p = p.to(torch.promote_types(p.dtype, torch.float32))
    tiny = torch.finfo(p.dtype).tiny
    if p.shape[-1] == 1:
        p = p.clamp(tiny, 1 - torch.finfo(p.dtype).eps)
        return torch.log(p) - torch.log1p(-p)
    return torch.log(p.clamp_min(tiny))


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model output: the output itself when it is a tensor, else its ``.logits`` tensor
    (HuggingFace ``ModelOutput``), else the logits of its first element when it is a non-empty tuple or list
    (``(logits, attention)`` of custom models; nested tuples are followed). ``TypeError`` otherwise."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output:
        return logits_of(output[0])
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}")


def probs_of(logits: torch.Tensor) -> torch.Tensor:
    """Output distribution ``[B, C]``: softmax of the logits; a single logit is a sigmoid ``[1 − σ, σ]``.

    Computed in ``promote_types(logits.dtype, float32)``."""
    if logits.dim() == 1:
        logits = logits[:, None]
    # at least float32 (half precision is upcast), float64 stays float64 (finite-difference checks need it)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if logits.shape[-1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=-1)
    return torch.softmax(logits, dim=-1)


def check_target(target: Any) -> None:
    """``TypeError`` unless ``target`` is None, an int, or a sequence / tensor (its values are checked by
    :func:`resolve_target`)."""
    if isinstance(target, (bool, str, bytes, float)) or not (
        target is None or isinstance(target, (int, torch.Tensor, Sequence)) or hasattr(target, "__array__")
    ):
        raise TypeError(
            "target must be None (the predicted class), an int class index, or a sequence / LongTensor with one "
            f"class index per example; got {type(target).__name__} {target!r}"
        )


def resolve_target(target: Any, logits: torch.Tensor) -> torch.Tensor:
    """``target`` as LongTensor ``[B]``: None → the predicted class; an int → that class for every row."""
    B = logits.shape[0]
    n_classes = probs_of(logits).shape[-1]
    if target is None:
        return probs_of(logits).argmax(dim=-1)
    check_target(target)
    if isinstance(target, int):
        t = torch.full((B,), target, dtype=torch.long, device=logits.device)
    else:
        try:
            t = torch.as_tensor(target, device=logits.device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"target must be None, an int, or a sequence / LongTensor of class indices; got {target!r}"
            ) from exc
        if t.is_floating_point() or t.dtype == torch.bool:
            raise TypeError("target must hold integer class indices")
        t = t.long().reshape(-1)
        if t.numel() == 1:
            t = t.expand(B).clone()
        if t.shape[0] != B:
            raise ValueError(f"target has {t.shape[0]} entries but the batch has {B} examples")
    if (t < 0).any() or (t >= n_classes).any():
        raise ValueError(f"target holds a class outside 0..{n_classes - 1}")
    return t


@functools.lru_cache(maxsize=16)
def _local_tokenizer_special_ids(path: str) -> frozenset[int]:
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return frozenset(int(i) for i in tok.all_special_ids)
    except Exception:
        return frozenset()


def special_ids_of(model: nn.Module, tokenizer: Any = None, special_ids: Iterable[int] | None = None) -> set[int]:
    """Token ids treated as special for ``model`` (see the module docstring for where they come from)."""
    ids: set[int] = set()
    if special_ids is not None:
        ids |= {int(i) for i in special_ids}
    if tokenizer is not None:
        ids |= {int(i) for i in getattr(tokenizer, "all_special_ids", [])}
    ids |= {int(i) for i in getattr(model, "special_token_ids", ()) or ()}
    config = getattr(model, "config", None)
    if config is not None:
        for key in _SPECIAL_CONFIG_KEYS:
            value = getattr(config, key, None)
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids |= {int(v) for v in value if isinstance(v, int)}
        path = getattr(config, "_name_or_path", "") or getattr(config, "name_or_path", "")
        if tokenizer is None and special_ids is None and path and os.path.isdir(path):
            ids |= set(_local_tokenizer_special_ids(str(path)))
    pad = getattr(model, "pad_token_id", None)
    if isinstance(pad, int):
        ids.add(pad)
    return ids


def _as_ids(x: Any, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except Exception as exc:
            raise TypeError(f"{name} must be a LongTensor of token ids, got {type(x).__name__}") from exc
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got a {x.dtype} tensor (embeddings are not accepted)")
    if x.dim() == 1:
        x = x[None]
    if x.dim() != 2:
        raise ValueError(f"{name} must be [batch, tokens], got shape {tuple(x.shape)}")
    return x.long()


def prepare_batch(
    model: nn.Module,
    inputs: Any,
    additional_forward_args: Any = None,
    *,
    mask: torch.Tensor | None = None,
    tokenizer: Any = None,
    special_ids: Iterable[int] | None = None,
    device: torch.device | str | None = None,
    forward: UserForward | None = None,
) -> Batch:
    """Normalise ``inputs`` (+ ``additional_forward_args``) for ``model``; see the module docstring.

    ``mask``: an explicit BoolTensor ``[B, T]`` of positions to score (overrides the special-token rule; padding is
    always excluded). ``tokenizer``: tokenizes raw-text ``inputs`` and adds its special ids. ``forward``: the user's
    ``forward_func`` the batch is run through (:class:`UserForward`).
    """
    extra: dict[str, Any] = {}
    special_mask = None
    if is_text_input(inputs):
        inputs = _tokenize(model, inputs, tokenizer, additional_forward_args)
        additional_forward_args = None
    if isinstance(inputs, Mapping):
        data = dict(inputs)
        if "input_ids" not in data:
            raise ValueError("inputs: a mapping must contain 'input_ids'")
        ids = _as_ids(data.pop("input_ids"), "inputs['input_ids']")
        special_mask = data.pop("special_tokens_mask", None)
        data.pop("offset_mapping", None)
        data.pop("length", None)
        attention_mask = data.pop("attention_mask", None)
        sig = forward_signature(model)
        for key in data:
            if not sig.accepts(key):
                raise ValueError(
                    f"inputs[{key!r}]: {type(model).__name__}.forward has no such parameter "
                    f"(it takes {', '.join(sig.names)})"
                )
        extra.update(data)
        if additional_forward_args is not None:
            raise ValueError("additional_forward_args must be None when inputs is a mapping (put them in the mapping)")
    else:
        ids = _as_ids(inputs, "inputs")
        attention_mask, bound = (None, {}) if additional_forward_args is None else bind_additional_forward_args(
            model, additional_forward_args
        )
        extra.update(bound)
    if device is not None:
        ids = ids.to(device)
    B, T = ids.shape
    if attention_mask is None:
        attention_mask = torch.ones(B, T, dtype=torch.long, device=ids.device)
    else:
        attention_mask = torch.as_tensor(attention_mask).to(ids.device)
        if attention_mask.dim() == 1:
            attention_mask = attention_mask[None]
        if tuple(attention_mask.shape) != (B, T):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but the input ids have shape {(B, T)}"
            )
        if not torch.all((attention_mask == 0) | (attention_mask == 1)):
            raise ValueError("attention_mask must hold 0/1 (padding / real token)")
        attention_mask = attention_mask.long()
        if forward_signature(model).mask is None and not bool(attention_mask.all()):
            raise ValueError(
                f"attention_mask: the inputs have padding, but {type(model).__name__}.forward takes no attention "
                "mask, so padding would be read as tokens"
            )

    token_args, row_args, const_args = {}, {}, {}
    for key, value in extra.items():
        if isinstance(value, torch.Tensor):
            value = value.to(ids.device)
            if value.dim() >= 2 and value.shape[:2] == (B, T):
                token_args[key] = value
            elif value.dim() >= 1 and value.shape[0] == B:
                row_args[key] = value
            else:
                const_args[key] = value
        else:
            const_args[key] = value

    real = attention_mask.bool()
    if mask is not None:
        mask = torch.as_tensor(mask).to(ids.device)
        if mask.dim() == 1:
            mask = mask[None]
        if tuple(mask.shape) != (B, T):
            raise ValueError(f"mask has shape {tuple(mask.shape)} but the input ids have shape {(B, T)}")
        items = mask.bool() & real
    elif special_mask is not None:
        special_mask = torch.as_tensor(special_mask).to(ids.device)
        if tuple(special_mask.shape) != (B, T):
            raise ValueError(
                f"special_tokens_mask has shape {tuple(special_mask.shape)} but the input ids have shape {(B, T)}"
            )
        items = real & ~special_mask.bool()
    else:
        specials = special_ids_of(model, tokenizer, special_ids)
        if specials:
            is_special = torch.isin(ids, torch.tensor(sorted(specials), device=ids.device))
        else:
            is_special = torch.zeros_like(real)
        items = real & ~is_special
    left = bool(((attention_mask[:, 0] == 0) & (attention_mask[:, -1] == 1)).any())
    if left and absolute_positions(model) == "fixed":
        raise ValueError(
            f"inputs are left-padded, but {type(model).__name__} has learned absolute positions and its forward "
            "takes no position_ids, so padding would shift every token; pad on the right "
            "(tokenizer.padding_side = 'right')"
        )
    return Batch(ids, attention_mask, items, token_args, row_args, const_args, left, forward)


def _tokenize(model: nn.Module, texts: Any, tokenizer: Any, additional_forward_args: Any) -> dict[str, torch.Tensor]:
    """Raw ``texts`` tokenized by ``tokenizer`` (module docstring), cut to the positions ``model`` takes."""
    if tokenizer is None:
        raise ValueError(
            "inputs: texts need tokenizer= (e.g. AutoTokenizer.from_pretrained(...), the model's own tokenizer); "
            "or pass tokenized inputs (tokenizer(texts, padding=True, return_tensors='pt'))"
        )
    if additional_forward_args is not None:
        raise ValueError("additional_forward_args must be None when inputs are texts (the tokenizer makes the mask)")
    limit = max_positions(model)
    enc, cut = tokenize_texts(tokenizer, texts, None if limit is None else limit[0])
    sig = forward_signature(model)  # what the tokenizer adds and the model does not take (token_type_ids) is left out
    enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "special_tokens_mask") or sig.accepts(k)}
    if cut:
        warnings.warn(f"inputs: {len(cut)} text(s) cut to the {limit[0]} tokens {type(model).__name__} takes "
                      f"({limit[1]}): {cut[:10]}{'...' if len(cut) > 10 else ''}", UserWarning, stacklevel=4)
    return enc
