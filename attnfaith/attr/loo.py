"""Leave-one-out token importance (Jain & Wallace 2019, ``remove_and_run``).

Jain & Wallace's ``model/Binary_Classification.py::remove_and_run`` *deletes* token ``i`` from the sequence
(``seq = cat(seq[:, :i], seq[:, i+1:])``, ``lengths -= 1``) and re-runs the model; the importance of the token is the
change of the output, ``|σ(ŷ_{-t}) − σ(ŷ)|`` for their one-logit binary models and ``Σ|softmax(ŷ_{-t}) −
softmax(ŷ)|`` for QA. Both are (twice, for QA) the total variation distance between the two output distributions;
attnfaith uses the TVD for every model:

    score[b, t] = TVD(p(x_b), p(x_b without t)) = ½ Σ_c |p_c(x_b) − p_c(x_b without t)|

which equals JW's binary value exactly and half their QA value (no effect on rankings).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from attnfaith._inputs import Batch, probs_of
from attnfaith._state import model_guard
from attnfaith.attention.readout_forward import ReadoutForwards
from attnfaith.attr._base import TokenAttribution
from attnfaith.engine import VariantRunner, length_breaks
from attnfaith.metrics import tvd
from attnfaith.perturb import delete_positions, mask_id_of, pad_id_of, replace_positions

__all__ = ["LeaveOneOut"]

_MODES = ("delete", "mask")


class LeaveOneOut(TokenAttribution):
    """Leave-one-out importance: ``score[b, t] = TVD(p(x_b), p(x_b^{-t}))`` for every scored position ``t``.

    ``x^{-t}`` is, with ``mode="delete"`` (default, Jain & Wallace's ``remove_and_run``), the input with token ``t``
    removed from the sequence (the rest closes up and the row is re-padded on its padding side, per-token arguments
    such as ``token_type_ids`` follow; :func:`attnfaith.perturb.delete_positions`); with ``mode="mask"``, the input
    with id ``replacement_id`` at ``t`` (default: the tokenizer's/config's mask token, else the padding id;
    attention mask unchanged).

    Only the items (``batch.items``: real, non-special tokens, or the caller's ``mask=``) are left out, as Jain &
    Wallace leave out positions ``1 .. L−2`` (never ``<SOS>``/``<EOS>``); every other position scores 0. The output
    distribution does not depend on the class, so ``target`` is accepted and ignored.

    The reference forward and the deletions share one pass: the ``B`` original rows (whose outputs are ``p(x_b)``)
    and the ``Σ_b n_items(b)`` leave-one-out rows run together through :class:`attnfaith.engine.VariantRunner`,
    sorted into length buckets (an original row goes with its own deletions), in chunks of
    ``max_examples_per_batch`` (or the engine's default chunk size); ``B + Σ_b n_items(b)`` rows in all, no other
    forward. The originals' output distributions of the last call are kept in ``self.last_probs`` (``[B, C]``, None
    when the batch had no items), so that a caller needing them (:class:`attnfaith.KendallTau`) runs no forward
    of its own. The last block of each forward is computed at the positions the classification head reads only where
    that applies and checks out (:class:`attnfaith.attention.readout_forward.ReadoutForwards`; ``readout=False``:
    complete forwards). ``batched=False`` runs one complete forward per row instead (the reference the tests
    compare with).

    Args:
        model: any model :func:`attnfaith._inputs.call_model` can run.
        mode: ``"delete"`` or ``"mask"``.
        replacement_id: the id put in place of the token with ``mode="mask"``.
        tokenizer: optional tokenizer, only used for its ``mask_token_id`` with ``mode="mask"``.
        max_examples_per_batch: variants per forward (Captum's name).
        memory_budget: bytes of activation memory one forward may use when ``max_examples_per_batch`` is None.
        batched: False → one forward per variant.
        readout: compute the last block at the rows the head reads only, where that applies (see above).
    """

    def __init__(
        self,
        model: nn.Module,
        mode: str = "delete",
        *,
        replacement_id: int | None = None,
        tokenizer: Any = None,
        max_examples_per_batch: int | None = None,
        memory_budget: int | None = None,
        batched: bool = True,
        readout: bool = True,
    ) -> None:
        super().__init__(model)
        if mode not in _MODES:
            raise ValueError(f"mode must be 'delete' or 'mask', got {mode!r}")
        if replacement_id is not None:
            if isinstance(replacement_id, bool) or not isinstance(replacement_id, int) or replacement_id < 0:
                raise ValueError(f"replacement_id must be a non-negative int token id, got {replacement_id!r}")
            if mode != "mask":
                raise ValueError("replacement_id is only used with mode='mask'")
        self.mode = mode
        self.replacement_id = replacement_id
        self.tokenizer = tokenizer
        self.runner = VariantRunner(model, max_examples_per_batch=max_examples_per_batch, memory_budget=memory_budget)
        self.batched = bool(batched)
        self.readout = bool(readout)
        self.last_probs: torch.Tensor | None = None

    def _variants(self, batch: Batch, rows: torch.Tensor, pos: torch.Tensor, width: int | None = None) -> Batch:
        """The batch of variants: row ``rows[i]`` of ``batch`` with position ``pos[i]`` left out (``pos[i] < 0``:
        nothing left out, the original row).

        Rows keep the batch's width (a left-padded row's layout never depends on its chunk); ``width`` cuts a
        right-padded chunk to its longest row."""
        sub = batch.index_rows(rows)
        drop = torch.arange(sub.input_ids.shape[1], device=batch.device)[None, :] == pos[:, None]
        if self.mode == "delete":
            varied = delete_positions(sub, drop, pad_id_of(self.model), trim=False)
        else:
            rid = self.replacement_id if self.replacement_id is not None else mask_id_of(self.model, self.tokenizer)
            varied = replace_positions(sub, drop, rid)
        return varied if width is None else varied.truncate(width)

    def attribute_batch(self, batch: Batch, target: Any = None, **kwargs: Any) -> torch.Tensor:
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        model = self.model
        B, T = batch.input_ids.shape
        device = batch.device
        out = torch.zeros(B, T, dtype=torch.float32, device=device)
        rows, pos = batch.items.nonzero(as_tuple=True)
        n = rows.shape[0]
        self.last_probs = None
        if n == 0:
            return out
        # one pass: variants 0..B-1 are the original rows (the reference p(x_b)), B.. the rows with one position
        # left out; the originals sit in the length bucket of their own deletions
        all_rows = torch.cat([torch.arange(B, device=device), rows])
        all_pos = torch.cat([torch.full((B,), -1, dtype=pos.dtype, device=device), pos])
        total = B + n
        widths = None
        order = None
        if self.batched and not batch.left_padded:
            # length bucketing: variants sorted by length (longest first), each chunk cut to its longest row
            lengths = (batch.attention_mask != 0).sum(-1).cpu()[all_rows.cpu()]
            if self.mode == "delete":
                lengths[B:] -= 1
            order_host = torch.sort(-lengths, stable=True).indices
            widths = lengths[order_host]
            order = order_host.to(device)
            all_rows, all_pos = all_rows[order], all_pos[order]

        forwards = ReadoutForwards(model, enabled=self.readout and self.batched)
        with model_guard(model), torch.inference_mode(), forwards:

            def run(start: int, stop: int) -> torch.Tensor:
                width = max(int(widths[start]), 1) if widths is not None else None
                v = self._variants(batch, all_rows[start:stop], all_pos[start:stop], width)
                return probs_of(forwards(v))

            if self.batched:
                breaks = length_breaks(widths) if widths is not None else ()
                probs = self.runner.run(total, run, seq_len=T, device=device, breaks=breaks, widths=widths)
            else:
                probs = torch.cat([run(i, i + 1) for i in range(total)])
            if order is not None:
                probs = torch.empty_like(probs).index_copy_(0, order, probs)
            values = tvd(probs[B:], probs[:B].index_select(0, rows)).float()
        self.last_probs = probs[:B]
        out[rows, pos] = values
        return out
