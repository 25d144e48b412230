"""Readout-restricted forwards: complete forwards of changed inputs whose last block is computed at the read rows only.

A perturbation forward (leave-one-out, token erasure, ERASER's top-k and soft variants, integrated gradients' steps)
runs the whole model on a changed input. The classification head of a sequence classifier reads a few positions of
the last block's output (:mod:`attnfaith.attention.readout`: ``[CLS]`` for BERT-like poolers, the last real token for
decoder classifiers), so in the last block everything after the attention is needed at those positions only:

    ctx = attention(h)                               the block's own attention at every position (its keys and
                                                     values need every position)
    out[rows]  = finish(block, ctx[rows], h[rows])   the output projection, residual, norms and feed-forward at the
                                                     read rows (:attr:`Family.finish`)
    out[other] = h[other]                            never read by the head (checked, see below)

A transformer block does about ``12·D²`` multiply-adds per token (``4·D²`` in the q/k/v/o projections, ``8·D²`` in a
``4·D`` feed-forward), ``9·D²`` of them after the attention: the last block costs about a quarter of a block, which
saves about 12 % of a 6-layer forward (MiniLM), 6 % of a 12-layer one. Forwards and gradients (integrated gradients)
both run through it.

How: while a :class:`ReadoutForwards` is active in the calling thread, the last block's ``forward`` is shadowed
(:func:`attnfaith._state.shadow_forward`; other threads run the block as usual) by a stand-in that runs the block's own
forward up to the module that takes the attention context (:attr:`Family.context`: BERT's ``attention.output``,
DistilBERT's ``out_lin``, GPT-2's ``c_proj``, Llama's ``o_proj``), stops there, and finishes the read rows. The rows
come from the call's ``input_ids`` (:attr:`Family.rows`).

Never a wrong number: the path is used only after

* planning: a model of a family of :data:`attnfaith.attention.readout.FAMILIES`, called directly (no user
  ``forward_func``), the block list found (the last element of the deepest ``nn.ModuleList`` whose elements hold
  the family's context module), not a block shared by several layers (ALBERT);
* the first call: on its first rows (at most 4), a head probe (a complete forward in which every position of the
  last block's output that the head is said not to read is NaN must give finite logits equal to the full forward's)
  and the readout logits compared with the full forward's (1e-4 relative, as the prefix cache's check).

On any failure the object stays inactive (``reason`` says why) and every call is a complete forward. Under
``torch.autocast`` it is not used (the equality check is float32's).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from attnfaith import _state
from attnfaith._inputs import Batch, call_model
from attnfaith._state import local_forward_hook
from attnfaith.attention.readout import Family, family_of, has_path, logits_match, nan_outside_rows

__all__ = ["ReadoutForwards"]

_KIND = "readout-forward"  # the kind of claim (attnfaith._state.claim) on the last block
_PROBE_ROWS = 4


class _Stop(Exception):
    """Raised at the context module to end the block's own forward; carries the attention context."""

    def __init__(self, context: torch.Tensor) -> None:
        super().__init__("readout stop")
        self.context = context


def _last_block(model: nn.Module, family: Family) -> tuple[nn.ModuleList, nn.Module] | None:
    """The deepest ``nn.ModuleList`` whose every element holds ``family.context``, and its last element."""
    best = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and all(
                has_path(block, family.context) for block in module):
            depth = name.count(".") + 1 if name else 0
            if best is None or depth > best[0]:
                best = (depth, module)
    if best is None:
        return None
    return best[1], best[1][len(best[1]) - 1]


class ReadoutForwards:
    """Complete forwards of a sequence classifier with the last block computed at the rows the head reads.

    Usage::

        with ReadoutForwards(model) as forwards:     # forwards.applicable / forwards.reason
            logits = forwards(batch)                 # as call_model(model, batch); the first call checks the path
            ... forwards.active

    Args:
        model: the model; batches are :class:`attnfaith._inputs.Batch` run with :func:`call_model`.
        enabled: False → every call is a plain :func:`call_model` (the reference the tests compare with).
    """

    def __init__(self, model: nn.Module, *, enabled: bool = True) -> None:
        self.model = model
        self.applicable = False
        self.active = False
        self.checked = False
        self.reason = ""
        self._entered = False
        self._armed = False
        self._poison = False
        self._rows: torch.Tensor | None = None
        self._shape: tuple[type, int] | None = None
        self._calls = 0
        if enabled:
            self._plan()
        else:
            self.reason = "disabled"

    def _plan(self) -> None:
        family = family_of(self.model)
        if family is None or not family.context:
            self.reason = "no readout family for this model (config.model_type)"
            return
        found = _last_block(self.model, family)
        if found is None:
            self.reason = f"no block list whose blocks hold {family.context}"
            return
        blocks, block = found
        if sum(1 for b in blocks if b is block) > 1:
            self.reason = "the last block is shared by several layers"
            return
        self.family = family
        self.block = block
        self.context_module = block.get_submodule(family.context)
        self.applicable = True

    # ---------------------------------------------------------------- context
    def __enter__(self) -> "ReadoutForwards":
        if self.applicable:
            try:
                _state.claim(_KIND, [self.block], self, "another ReadoutForwards is active on this model here")
            except RuntimeError as exc:  # nested use in this thread: the outer one serves the forwards
                self.applicable = False
                self.reason = str(exc)
                return self
            _state.share((_KIND, id(self.block)), lambda: _state.shadow_forward(self.block, _KIND))
            self._hook = self.context_module.register_forward_pre_hook(self._stop)
            self._entered = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._entered:
            self._hook.remove()
            _state.unshare((_KIND, id(self.block)))
            _state.release(_KIND, self)
            self._entered = False
        self.active = False

    # ---------------------------------------------------------------- the stand-in of the last block
    def _stop(self, module: nn.Module, args: tuple) -> None:
        if self._armed and _state.owner(_KIND, self.block) is self and args and isinstance(args[0], torch.Tensor):
            raise _Stop(args[0])

    def stand_in(self, original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The last block's forward while this object is active in the calling thread."""
        if self._rows is None:
            self._calls += 1
            out = original(*args, **kwargs)
            if self._shape is None:
                self._shape = (type(out), len(out) if isinstance(out, tuple) else 0)
            return out
        h = args[0] if args else kwargs.get("hidden_states")
        self._armed = True
        try:
            original(*args, **kwargs)
        except _Stop as stop:
            context = stop.context
        else:
            raise RuntimeError(f"the block did not call {self.family.context}")
        finally:
            self._armed = False
        rows = self._rows
        if rows.shape[0] != h.shape[0]:
            raise RuntimeError("the block's input does not have the call's rows")
        at = rows[:, :, None]
        ctx = context.gather(1, at.expand(-1, -1, context.shape[-1]))
        h_rows = h.gather(1, at.expand(-1, -1, h.shape[-1]))
        out_rows = self.family.finish(self.block, ctx, h_rows)
        out = h.scatter(1, at.expand(-1, -1, h.shape[-1]), out_rows.to(h.dtype))
        kind, length = self._shape if self._shape is not None else (torch.Tensor, 0)
        if kind is tuple or (isinstance(kind, type) and issubclass(kind, tuple)):
            return (out,) + (None,) * (length - 1)
        return out

    # ---------------------------------------------------------------- calls
    def __call__(self, batch: Batch) -> torch.Tensor:
        """Logits of ``batch`` (as :func:`attnfaith._inputs.call_model`), through the readout path once checked."""
        if not self._entered or torch.is_autocast_enabled(batch.device.type) or batch.forward is not None:
            return call_model(self.model, batch)
        if not self.checked:
            self.checked = True
            checked = self._check(batch)  # the readout logits of the first rows, when the checks pass
            if checked is not None:
                n, k = int(batch.input_ids.shape[0]), int(checked.shape[0])
                if k == n:
                    return checked
                rest = self._readout(batch.index_rows(torch.arange(k, n, device=batch.device)))
                return torch.cat([checked, rest])
        if not self.active:
            return call_model(self.model, batch)
        return self._readout(batch)

    def check(self, batch: Batch) -> bool:
        """Run the checks of the module docstring on the first rows of ``batch`` (once; the first call does it
        otherwise) and return :attr:`active`. Call it directly when the later calls run under hooks that must not
        see the check's forwards (integrated gradients)."""
        if not self.checked and self._entered:
            self.checked = True
            self._check(batch)
        return self.active

    def _readout(self, batch: Batch) -> torch.Tensor:
        self._rows = self.family.rows(self.model, batch.input_ids).to(batch.device)
        try:
            return call_model(self.model, batch)
        finally:
            self._rows = None

    def _check(self, batch: Batch) -> torch.Tensor | None:
        """Sets :attr:`active`; returns the readout logits of the first rows of ``batch`` when the checks pass (so
        that the first call reuses them), else None. Costs two forwards of those rows (the full one, the probe)."""
        k = min(int(batch.input_ids.shape[0]), _PROBE_ROWS)
        sub = batch.index_rows(torch.arange(k, device=batch.device))
        self._calls = 0
        try:
            full = call_model(self.model, sub)
            if self._calls != 1:
                self.reason = f"the last block ran {self._calls} times in one forward (shared weights?)"
                return None
            probed = self._probe(sub)
        except Exception as exc:  # the model cannot run with the probe: complete forwards
            self.reason = f"the head probe failed ({type(exc).__name__}: {exc})"
            return None
        if not bool(torch.isfinite(probed).all()):
            self.reason = "the head reads positions other than the readout rows"
            return None
        if not logits_match(probed, full):
            self.reason = "the head probe does not reproduce the full forward"
            return None
        try:
            mine = self._readout(sub)
        except Exception as exc:  # a block layout the table does not describe
            self.reason = f"the readout forward failed ({type(exc).__name__}: {exc})"
            return None
        if not logits_match(mine, full):
            self.reason = "the readout forward does not reproduce the full forward"
            return None
        self.active = True
        return mine

    def _probe(self, sub: Batch) -> torch.Tensor:
        """Logits of ``sub`` with every position of the last block's output that the head should not read NaN."""
        read = self.family.rows(self.model, sub.input_ids).to(sub.device)

        def poison(module: nn.Module, args: Any, output: Any) -> Any:
            return nan_outside_rows(output, read)

        with local_forward_hook(self.block, poison):
            return call_model(self.model, sub)
