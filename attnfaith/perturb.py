"""Token-level perturbations of a batch: delete positions from the sequence, or replace their ids.

Deletion follows Jain & Wallace's ``remove_and_run`` (``seq = cat(seq[:, :i], seq[:, i+1:])``, ``lengths -= 1``):
the token leaves the sequence, the remaining tokens close up, and the row is re-padded on its padding side (left
for decoder classifiers). Per-token model arguments (``token_type_ids``...) and the ``items`` mask follow the
tokens. Everything is vectorised over rows: no Python loop over examples or positions.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from attnfaith._inputs import Batch

__all__ = ["delete_positions", "replace_positions", "pad_id_of", "mask_id_of", "check_erase", "erase_id"]


def pad_id_of(model: nn.Module) -> int:
    """The padding id of the model: ``config.pad_token_id``, ``model.pad_token_id``, else 0."""
    config = getattr(model, "config", None)
    for value in (getattr(config, "pad_token_id", None), getattr(model, "pad_token_id", None)):
        if isinstance(value, int):
            return value
    return 0


def mask_id_of(model: nn.Module, tokenizer=None) -> int:
    """The id ``erase="mask"`` puts in place of a token: the tokenizer's or config's mask token, else padding."""
    for value in (getattr(tokenizer, "mask_token_id", None), getattr(getattr(model, "config", None), "mask_token_id", None)):
        if isinstance(value, int):
            return value
    return pad_id_of(model)


def check_erase(model: nn.Module, erase: Any, allowed: Sequence[str] = ("delete", "mask", "pad")) -> Any:
    """``erase`` (how a token is removed) if it is one of ``allowed`` or a token id of the model; ``ValueError``
    naming ``erase`` otherwise."""
    if isinstance(erase, bool) or not (erase in allowed if isinstance(erase, str) else isinstance(erase, int)):
        raise ValueError(f"erase must be one of {tuple(allowed)} or an int token id, got {erase!r}")
    if isinstance(erase, int):
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        if erase < 0 or (isinstance(vocab, int) and erase >= vocab):
            raise ValueError(f"erase={erase} is not a token id of the model (vocabulary size {vocab})")
    return erase


def erase_id(model: nn.Module, erase: Any, tokenizer: Any = None) -> int | None:
    """The id ``erase`` puts in place of a token: None for ``"delete"`` (the token leaves the sequence), the mask
    token (else padding, :func:`mask_id_of`) for ``"mask"``, the padding id for ``"pad"``, an int as given."""
    if erase == "delete":
        return None
    if erase == "mask":
        return mask_id_of(model, tokenizer)
    if erase == "pad":
        pad = getattr(tokenizer, "pad_token_id", None)
        return pad if isinstance(pad, int) else pad_id_of(model)
    return int(erase)


def delete_positions(batch: Batch, drop: torch.Tensor, pad_id: int, trim: bool = True) -> Batch:
    """Remove the positions where ``drop`` ``[B, T]`` is True from each row of ``batch``.

    Padding positions are never kept. The result is re-padded (right, or left when ``batch.left_padded``) with
    ``pad_id`` and, with ``trim``, cut to the longest remaining row.
    """
    if drop.shape != batch.input_ids.shape:
        raise ValueError(f"drop has shape {tuple(drop.shape)} but the batch is {tuple(batch.input_ids.shape)}")
    B, T = batch.input_ids.shape
    device = batch.device
    keep = (batch.attention_mask != 0) & ~drop.to(device=device, dtype=torch.bool)
    pos = torch.arange(T, device=device).expand(B, T)
    n_keep = keep.sum(dim=-1, keepdim=True)
    if batch.left_padded:
        order = torch.sort(torch.where(keep, pos + T, pos), dim=-1, stable=True).indices
        slot_real = pos >= (T - n_keep)
    else:
        order = torch.sort(torch.where(keep, pos, pos + T), dim=-1, stable=True).indices
        slot_real = pos < n_keep

    def move(t: torch.Tensor, fill) -> torch.Tensor:
        idx = order.view(B, T, *([1] * (t.dim() - 2))).expand_as(t)
        moved = t.gather(1, idx)
        real = slot_real.view(B, T, *([1] * (t.dim() - 2)))
        return torch.where(real, moved, torch.as_tensor(fill, dtype=t.dtype, device=device))

    ids = move(batch.input_ids, pad_id)
    mask = slot_real.to(batch.attention_mask.dtype)
    items = move(batch.items, False)
    token_args = {k: move(v, 0) for k, v in batch.token_args.items()}
    if trim and B > 0:
        width = max(int(n_keep.max()), 1)
        sl = slice(T - width, T) if batch.left_padded else slice(0, width)
        ids, mask, items = ids[:, sl], mask[:, sl], items[:, sl]
        token_args = {k: v[:, sl] for k, v in token_args.items()}
    return batch.with_tokens(ids, mask, items, token_args)


def replace_positions(batch: Batch, drop: torch.Tensor, replacement_id: int) -> Batch:
    """Put ``replacement_id`` at the positions where ``drop`` ``[B, T]`` is True (attention mask unchanged)."""
    if drop.shape != batch.input_ids.shape:
        raise ValueError(f"drop has shape {tuple(drop.shape)} but the batch is {tuple(batch.input_ids.shape)}")
    drop = drop.to(device=batch.device, dtype=torch.bool) & (batch.attention_mask != 0)
    ids = batch.input_ids.masked_fill(drop, replacement_id)
    return batch.with_tokens(ids, batch.attention_mask, batch.items & ~drop)
