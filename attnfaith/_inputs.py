"""Turning what users pass (Captum-style tensors or tokenizer output) into one normalised batch.

Two conventions are accepted everywhere ``inputs`` is:

* Captum's: ``inputs`` is a LongTensor of token ids ``[B, T]`` and ``additional_forward_args`` holds the further
  arguments, bound by meaning (:func:`attnfaith.attention.forward_args.bind_additional_forward_args`): positional
  entries are the attention mask, then ``token_type_ids``, then ``position_ids``; a mapping entry binds by name. A
  single tensor is taken as a 1-tuple.
* HuggingFace's: ``inputs`` is a mapping such as a tokenizer's ``BatchEncoding`` with ``input_ids``,
  ``attention_mask`` and any further model arguments. A ``special_tokens_mask`` entry (tokenizers give it with
  ``return_special_tokens_mask=True``) says which positions are special; it is not passed to the model.

Items (the positions every metric scores) are the real tokens: ``attention_mask == 1`` and not special. Special
ids come, in order of preference, from the ``special_tokens_mask`` of the inputs, from ``special_ids`` /
``tokenizer`` arguments, from the model (``model.special_token_ids``, the config's pad/bos/eos/sep/cls/mask ids), and
for a model loaded from a local folder, from that folder's tokenizer.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from attnfaith.attention.forward_args import (
    absolute_positions,
    bind_additional_forward_args,
    forward_signature,
    position_ids_from_mask,
)

__all__ = [
    "Batch", "prepare_batch", "logits_of", "probs_of", "check_target", "resolve_target", "call_model", "special_ids_of",
]

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
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    items: torch.Tensor
    token_args: dict[str, torch.Tensor] = field(default_factory=dict)
    row_args: dict[str, torch.Tensor] = field(default_factory=dict)
    const_args: dict[str, Any] = field(default_factory=dict)
    left_padded: bool = False

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

    The ids go to the forward's ``input_ids`` (else its first positional parameter), the mask to its mask parameter
    (:data:`~attnfaith.attention.forward_args.MASK_PARAMETERS`), the other arguments by name. On a left-padded batch
    of a model with learned absolute positions, ``position_ids`` are derived from the mask (unless given), so a
    row's numbers do not depend on the padding its batch-mates impose."""
    sig = forward_signature(model)
    kwargs = {**batch.token_args, **batch.row_args, **batch.const_args}
    if sig.mask is not None:
        kwargs[sig.mask] = batch.attention_mask
    if batch.left_padded and "position_ids" not in kwargs and absolute_positions(model) == "position_ids":
        kwargs["position_ids"] = position_ids_from_mask(batch.attention_mask)
    if sig.ids == "input_ids":
        return logits_of(model(input_ids=batch.input_ids, **kwargs))
    return logits_of(model(batch.input_ids, **kwargs))


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
) -> Batch:
    """Normalise ``inputs`` (+ ``additional_forward_args``) for ``model``; see the module docstring.

    ``mask``: an explicit BoolTensor ``[B, T]`` of positions to score (overrides the special-token rule; padding is
    always excluded).
    """
    extra: dict[str, Any] = {}
    special_mask = None
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
    return Batch(ids, attention_mask, items, token_args, row_args, const_args, left)
