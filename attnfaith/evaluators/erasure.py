"""Decision-flip erasure curves: Serrano & Smith (2019), "Is Attention Interpretable?", section 5.

Remove items one at a time in descending order of an attribution (attention, gradients, Captum's IG / saliency /
LIME, leave-one-out, random...), rerun the model after every removal and record when its decision first changes. A
faithful ranking flips the decision after few removals.

Definitions (per example ``b`` with ``n_b`` items; items are ``batch.items``: the real, non-special tokens, or the
caller's ``mask``):

* **order**: the items sorted by descending score, ties broken by the lower position
  (:func:`attnfaith.metrics.descending_order`). Serrano & Smith sort with ``torch.sort`` (no tie rule) and push
  padding to the end (``get_inds_of_sorted_attnshaped_vals``); padding and special tokens are simply never items here.
* **variant k** (``k = 0..n_b``): the example with its top-``k`` items erased.

  - ``level="attention"``: the attention weight on those keys is set to 0 in the chosen layer(s) and heads, for
    every query row, and each row is L1-renormalised (Serrano & Smith: ``F.normalize(p=1)``; the ``"zero"``
    intervention of :mod:`attnfaith.attention.interventions`). Serrano & Smith re-run only the classifier above one
    attention layer with cached inputs (``classifier_from_attn_and_input_vects.py``); here the model runs in full
    and attention layers other than the chosen ones are left as computed.
  - ``level="token"``: the tokens leave the input. ``erase="delete"`` removes them from the sequence, the rest
    closes up and the row is re-padded on its padding side to the original width (Jain & Wallace's
    ``remove_and_run`` deletion; :func:`attnfaith.perturb.delete_positions` with ``trim=False``, so a row's layout
    never depends on which other variants share its forward); ``erase="mask"`` puts the mask token (else the
    padding id) in their place, an int puts that id (:func:`attnfaith.perturb.replace_positions`).

* ``prediction[b]`` = argmax of the original output (softmax, or ``[1−σ, σ]`` for one logit).
* ``curve[b, k]`` = probability of ``prediction[b]`` in variant ``k``; ``curve[b, 0]`` is the original; NaN for
  ``k > n_b``.
* ``n_removed[b]`` = the first ``k ≥ 1`` whose argmax differs from ``prediction[b]``; NaN if no ``k ≤ n_b`` does
  (Serrano & Smith store −1 and leave such instances out of their means, ``report_frac_for_model``).
* ``fraction_removed[b] = n_removed[b] / n_b`` (``needed_to_rem_frac_x_top_items_for_decflip``); NaN if never.
* ``flipped[b]`` = the decision changed for some ``k ≤ n_b``.
* ``aopc[b] = 1/(n_b+1) Σ_{k=0}^{n_b} (curve[b, 0] − curve[b, k])``: the area over the perturbation curve of Samek
  et al. (2017, "Evaluating the visualization of what a deep neural network has learned", eq. 12), over the whole
  curve (every item removed), whether or not the decision flipped.

**Curve points at fixed fractions** (``steps=(f_1, ..., f_S)``, e.g. ERASER's ``(0.01, 0.05, 0.1, 0.2, 0.5)``,
DeYoung et al. 2020): instead of every ``k = 1..n_b``, only ``k_j(b) = min(n_b, max(1, ⌈f_j · n_b⌉))`` items are
removed (:func:`step_counts`; at least one item, ``f · n`` rounded to 9 decimals before the ceiling so that
``0.1 · 30`` is 3). Then ``curve[b, k]`` is NaN for every ``k`` not among the ``k_j(b)``; ``n_removed[b]`` is the
first of these counts at which the decision differs (the first step that flipped, in items: exact for the points
evaluated, an upper bound of the per-item value), ``fraction_removed[b] = n_removed[b] / n_b``; and
``aopc[b] = 1/(S+1) Σ_{j=1}^{S} (curve[b, 0] − curve[b, k_j(b)])``, ERASER's AOPC over its bins with the ``k = 0``
term (steps that give the same count on a short example each count once per step).

**The random ranking** (``attributions="random"``) is Serrano & Smith's ``n_random = 5`` random orders
(``num_rand_samples_to_take``; seeded, see :mod:`attnfaith.evaluators.rankings`). Each order is run exactly like a
fixed ranking; then, per example,

* ``curve[b]`` and ``aopc[b]`` are the means over the orders (the AOPC of the mean curve);
* ``n_removed[b]`` is the mean of ``n_removed`` over the orders that flipped (NaN if none did), so
  ``fraction_removed[b] = n_removed[b] / n_b`` is the mean fraction over those orders;
* ``flipped[b]`` = at least one order flipped;
* ``n_removed_per_order`` ``[B, n_random]`` keeps every order's value.

:meth:`ErasureResult.summary` pools ``(example, order)`` pairs, as Serrano & Smith's ``report_frac_for_model
('avg_random')`` flattens the five random columns: mean fraction removed over the pairs that flipped, share of
pairs that never flipped, mean AOPC. For a fixed ranking (one order) the pairs are the examples. Deliberate
differences from that script: it selects the rows to average by whether the *from-bottom* ranking flipped and keeps
the random orders' −1 entries in the mean; here never-flipped pairs are left out of the mean fraction and counted in
``never_flipped``, and examples with a single item are kept (their script needs ``seq_len > 1``).

**Engine.** All ``Σ_b n_b`` variants (times ``n_random`` for the random ranking; variant 0 is the original forward,
never re-run) are packed, with no wasted forward for ``k > n_b``, and run through
:class:`attnfaith.engine.VariantRunner` in chunks of ``max_examples_per_batch`` (default: from the model size and a
memory budget). Erase masks are built on the device for a whole chunk at once from the rank of every item
(``erase = items & (rank < k)``); there is no host synchronisation inside the loop (one before it, to count the
variants, and one when the results are read). :func:`attnfaith.plain_loops.plain_erasure_flip` runs the same definitions
as a plain Python loop, one forward per example and per removal (the tests' reference).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from attnfaith._inputs import Batch, probs_of
from attnfaith._state import model_guard
from attnfaith.attention import AttentionTap, AttentionUnreachableError
from attnfaith.attention.readout_forward import ReadoutForwards
from attnfaith.engine import length_breaks
from attnfaith.evaluators._base import Evaluator, check_items
from attnfaith.evaluators._variants import AttentionVariants, call_model_autocast
from attnfaith.evaluators.erasure_results import ErasureComparison, ErasureResult
from attnfaith.evaluators.rankings import Ranking, check_n_random, resolve_ranking
from attnfaith.evaluators.selection import (
    check_heads, check_layers, check_query, probe_layers, resolve_attention_layers, resolve_layers,
)
from attnfaith.metrics import descending_order
from attnfaith.perturb import check_erase, delete_positions, erase_id, pad_id_of, replace_positions
from attnfaith.seeding import check_seed

__all__ = ["ErasureFlip", "ErasureResult", "ErasureComparison", "step_counts"]

_LEVELS = ("attention", "token")
_ERASE = ("delete", "mask")


def _ranks(scores: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``rank[b, t]``: position of token ``t`` in the descending order of row ``b`` (0 = removed first)."""
    order = descending_order(scores, items).order
    B, T = order.shape
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(T, device=order.device).expand(B, T))
    return rank


def _check_steps(steps: Any) -> tuple[float, ...] | None:
    """``steps`` as a sorted tuple of distinct fractions in ``(0, 1]`` (None stays None); ``ValueError`` /
    ``TypeError`` naming ``steps`` otherwise."""
    if steps is None:
        return None
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Iterable):
        raise TypeError(f"steps must be None or a sequence of fractions in (0, 1], got {steps!r}")
    values = list(steps)
    if not values:
        raise ValueError("steps must name at least one fraction (or be None for every item)")
    for f in values:
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ValueError(f"steps must be fractions in (0, 1], got {f!r}")
    return tuple(sorted({float(f) for f in values}))


def step_counts(n_items: torch.Tensor, steps: Sequence[float]) -> torch.Tensor:
    """``k[b, j] = min(n_b, max(1, ⌈steps[j] · n_b⌉))`` (``steps[j] · n_b`` rounded to 9 decimals first): the
    items removed at each fixed-fraction step, LongTensor ``[B, S]`` on ``n_items``' device (0 for a row without
    items)."""
    n = n_items.detach().to("cpu", torch.float64)[:, None]
    f = torch.tensor(list(steps), dtype=torch.float64)[None, :]
    k = torch.ceil(torch.round(f * n, decimals=9)).clamp_min(1)
    k = torch.minimum(k, n)
    return k.long().to(n_items.device)


# ----------------------------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------------------------

# ----------------------------------------------------------------------------------------------------------------
# the evaluator
# ----------------------------------------------------------------------------------------------------------------


class ErasureFlip(Evaluator):
    """Decision-flip erasure curves (Serrano & Smith 2019, section 5) for any ranking of the input tokens.

    Example::

        ef = ErasureFlip(model)                                   # attention level, last layer, all heads
        res = ef.evaluate(enc, "attention")                       # or a [B, T] tensor, a Captum object, "random"
        res.fraction_removed, res.flipped, res.curve, res.summary()
        print(ef.compare(enc, {"attention": "attention", "ig": lig, "random": "random"}))

    Args:
        model: a HuggingFace model or a custom model (see :class:`attnfaith.AttentionTap`).
        level: ``"attention"`` (zero the item's attention weight and renormalise) or ``"token"`` (erase the token).
        layer: the attention layer(s) erased at ``level="attention"`` and read by the attention-based ranking names:
            an int (negative counts from the end; ``-1`` = the last layer: for T5/BART the last decoder
            cross-attention), a list of ints, or ``"all"`` (every layer whose keys are the input tokens).
        heads: None (every head), an int or a list of heads (erased at the attention level; the attention-based
            ranking names average over them).
        erase: ``level="token"`` only: ``"delete"`` (default), ``"mask"`` (mask token, else padding) or an int id.
        n_random: orders of the ``"random"`` ranking (Serrano & Smith: 5).
        seed: seed of the random orders.
        query: which query row the attention-based ranking names read: ``"auto"`` (default; see
            :func:`attnfaith.evaluators.selection.auto_query`), ``"cls"``, ``"last"``, ``"mean"`` or an int.
        modules: module names for :class:`attnfaith.AttentionTap` (custom models whose attention is not an
            :class:`attnfaith.nn.AttentionSoftmax`).
        max_examples_per_batch, memory_budget: see :class:`attnfaith.evaluators._base.Evaluator`.
        prefix: at the attention level, run the variants through the blocks from the first erased layer up only,
            from a cache of the hidden states below (:class:`attnfaith.attention.prefix.PrefixCache`; complete
            forwards where it does not apply). Same results up to float rounding.
        dtype: ``torch.autocast`` dtype for the forwards (e.g. ``torch.bfloat16`` on CUDA); None: the model's.
        readout: compute only the rows of the last block that the classification head reads, where that applies
            and its checks pass: at the attention level on the last layer, per variant
            (:class:`attnfaith.attention.readout.ReadoutCache`; else the prefix cache); at the token level, in every
            forward (:class:`attnfaith.attention.readout_forward.ReadoutForwards`; not with ``dtype``). Same results
            up to float rounding.
        steps: None (default: a curve point after every item) or fractions in ``(0, 1]`` of the items to remove,
            e.g. ``(0.01, 0.05, 0.1, 0.2, 0.5)`` (ERASER): see "Curve points at fixed fractions" in the module
            docstring.
    """

    def __init__(
        self,
        model: nn.Module,
        level: str = "attention",
        layer: Any = -1,
        heads: Any = None,
        erase: Any = "delete",
        *,
        n_random: int = 5,
        seed: int = 0,
        query: Any = "auto",
        modules: Sequence[str] | None = None,
        max_examples_per_batch: int | None = None,
        memory_budget: int | None = None,
        prefix: bool = True,
        dtype: torch.dtype | None = None,
        readout: bool = True,
        steps: Sequence[float] | None = None,
    ) -> None:
        super().__init__(model, max_examples_per_batch=max_examples_per_batch, memory_budget=memory_budget)
        self.prefix = bool(prefix)
        self.readout = bool(readout)
        self.dtype = dtype
        self.steps = _check_steps(steps)
        if level not in _LEVELS:
            raise ValueError(f"level must be 'attention' or 'token', got {level!r}")
        check_n_random(n_random)
        self.level = level
        self.layer = check_layers(layer, "layer")
        self.heads = check_heads(heads, "heads")
        self.erase = check_erase(model, erase, _ERASE)
        self.n_random = n_random
        self.seed = check_seed(seed)
        self.query = check_query(query)
        self.modules = list(modules) if modules is not None else None

    # ------------------------------------------------------------------------------------------------ public API
    def evaluate(
        self,
        inputs: Any,
        attributions: Any = None,
        *,
        target: Any = None,
        additional_forward_args: Any = None,
        max_examples_per_batch: int | None = None,
        mask: torch.Tensor | None = None,
        tokenizer: Any = None,
        special_ids: Iterable[int] | None = None,
        name: str | None = None,
        full_curve: bool = True,
        example_ids: Any = None,
    ) -> ErasureResult:
        """Run the erasure for one ranking.

        Args:
            inputs, additional_forward_args: Captum's convention (ids + ``(attention_mask, ...)``) or a tokenizer's
                output (see :mod:`attnfaith._inputs`).
            attributions: a ``[B, T]`` tensor, an object with Captum's ``.attribute`` (run on the inputs for
                ``target``), or one of ``"attention"`` (also None, the default), ``"gradient"``,
                ``"attention_x_gradient"``, ``"random"``.
            target: the class the attribution explains (None: the predicted class). The curve and the flips always
                follow the originally predicted class.
            max_examples_per_batch: variants per forward for this call.
            mask: BoolTensor ``[B, T]`` of the items (default: real, non-special tokens).
            tokenizer, special_ids: where special ids (and the mask token) come from.
            name: the label in reports (default: the ranking's name).
            full_curve: False → stop each example at its first flip (early exit): ``n_removed``,
                ``fraction_removed`` and ``flipped`` are unchanged, ``curve`` stops at the flip (NaN after it) and
                ``aopc`` is NaN for flipped examples (it needs the whole curve).
            example_ids: the rows' global example ids (LongTensor or sequence ``[B]``; default ``0..B-1``): the
                ``"random"`` orders of row ``b`` come from the generator seeded ``example_seed(seed,
                example_ids[b])`` (:mod:`attnfaith.seeding`).
        """
        if attributions is None:
            attributions = "attention"
        batch = self.prepare(inputs, additional_forward_args, mask=mask, tokenizer=tokenizer, special_ids=special_ids)
        check_items(batch, "inputs")
        with model_guard(self.model):
            layers, query = self._layers_and_query(batch, attributions)
            ranking = self._ranking(attributions, batch, target, layers, query, example_ids=example_ids)
            return self._evaluate_ranking(batch, ranking, layers, max_examples_per_batch, tokenizer, name=name,
                                          full_curve=full_curve)

    def compare(
        self,
        inputs: Any,
        attributions: Mapping[str, Any] | Sequence[str],
        *,
        target: Any = None,
        additional_forward_args: Any = None,
        max_examples_per_batch: int | None = None,
        mask: torch.Tensor | None = None,
        tokenizer: Any = None,
        special_ids: Iterable[int] | None = None,
        full_curve: bool = True,
        example_ids: Any = None,
    ) -> ErasureComparison:
        """Run several rankings on the same inputs: ``{"attention": "attention", "ig": lig, "random": "random"}``
        (or a list of ranking names). Returns an :class:`ErasureComparison` (``.table``, ``.to_markdown()``).
        ``example_ids``: as in :meth:`evaluate`."""
        if isinstance(attributions, Mapping):
            named = dict(attributions)
        elif isinstance(attributions, (list, tuple)) and all(isinstance(a, str) for a in attributions):
            named = {a: a for a in attributions}
        else:
            raise TypeError("attributions must be a mapping name -> attributions, or a list of ranking names")
        if not named:
            raise ValueError("attributions must name at least one ranking")
        batch = self.prepare(inputs, additional_forward_args, mask=mask, tokenizer=tokenizer, special_ids=special_ids)
        check_items(batch, "inputs")
        results = {}
        with model_guard(self.model):
            for key, attr in named.items():
                layers, query = self._layers_and_query(batch, attr)
                ranking = self._ranking(attr, batch, target, layers, query, name=f"attributions[{key!r}]",
                                        example_ids=example_ids)
                results[key] = self._evaluate_ranking(batch, ranking, layers, max_examples_per_batch, tokenizer,
                                                      name=key, full_curve=full_curve)
        return ErasureComparison(results)

    # ------------------------------------------------------------------------------------------------ internals
    def _needs_layers(self, attributions: Any) -> bool:
        return self.level == "attention" or (isinstance(attributions, str) and attributions != "random")

    def _layers_and_query(self, batch: Batch, attributions: Any) -> tuple[list[int] | None, Any]:
        if not self._needs_layers(attributions):
            # token level with a ranking that reads no attention: the layers are unused, but a bad ``layer`` is
            # still reported when the model has attention the tap can reach
            try:
                infos = probe_layers(self.model, batch, self.modules)
            except AttentionUnreachableError:
                return None, "cls"
            resolve_layers(self.layer, infos, "layer")
            return None, "cls"
        return resolve_attention_layers(self.model, batch, self.layer, self.heads, self.modules, self.query)

    def _ranking(self, attributions: Any, batch: Batch, target: Any, layers, query,
                 name: str = "attributions", example_ids: Any = None) -> Ranking:
        return resolve_ranking(attributions, self.model, batch, target, layers=layers, heads=self.heads, query=query,
                               n_random=self.n_random, seed=self.seed, name=name, example_ids=example_ids)

    def _tap(self) -> AttentionTap:
        return AttentionTap(self.model, capture=None, modules=self.modules)

    def _forward(self, sub: Batch, erase: torch.Tensor | None, tap: AttentionTap | None, layers,
                 replacement, width: int | None = None, forwards: ReadoutForwards | None = None) -> torch.Tensor:
        """Output distribution ``[n, C]`` of the rows of ``sub`` with ``erase`` ``[n, T]`` erased (None: nothing).

        ``width``: keep only the first ``width`` columns after erasing (right-padded inputs whose rows are all at
        most that long: the cut columns are padding). ``forwards``: the token level's readout-restricted forwards."""
        model = self.model
        if erase is None:
            return probs_of(self._call(sub, forwards))
        if self.level == "attention":
            iv = tap.intervene("zero", erase, layers=tuple(layers), heads=self.heads)
            try:
                return probs_of(self._call(sub))
            finally:
                tap.remove(iv)
        if replacement is None:
            varied = delete_positions(sub, erase, pad_id_of(model), trim=False)
        else:
            varied = replace_positions(sub, erase, replacement)
        return probs_of(self._call(varied if width is None else varied.truncate(width), forwards))

    def _call(self, sub: Batch, forwards: ReadoutForwards | None = None) -> torch.Tensor:
        if forwards is not None and self.dtype is None:
            return forwards(sub)
        return call_model_autocast(self.model, sub, self.dtype)

    def _evaluate_ranking(self, batch: Batch, ranking: Ranking, layers, max_examples_per_batch, tokenizer: Any,
                          name: str | None = None, full_curve: bool = True) -> ErasureResult:
        replacement = erase_id(self.model, self.erase, tokenizer) if self.level == "token" else None
        runner = self.runner_for(max_examples_per_batch)
        tap = self._tap() if self.level == "attention" else None
        forwards = ReadoutForwards(self.model, enabled=self.readout and self.level == "token" and self.dtype is None)
        with torch.inference_mode(), forwards:
            if tap is not None:
                tap.__enter__()
            try:
                pred, curve, first = self._run_variants(batch, ranking, runner, tap, layers, replacement, full_curve,
                                                        forwards)
            finally:
                if tap is not None:
                    tap.__exit__(None, None, None)
        return self._result(batch, ranking, pred, curve, first, name)

    def _run_variants(self, batch: Batch, ranking: Ranking, runner, tap, layers, replacement, full_curve: bool = True,
                      forwards: ReadoutForwards | None = None):
        """Returns ``pred [B]``, ``curve [R, B, T+1]`` and ``first [R, B]`` (first flipping k, ``T+1`` if none).

        Attention level: the variants run through :class:`AttentionVariants` (prefix cache: only the blocks from
        the first erased layer up run per variant). Token level on right-padded inputs: variants are sorted by
        their length and each chunk is cut to its longest row (length bucketing), so shortened rows do not pay for
        padding. ``full_curve=False``: removal steps run in rounds and an (order, example) pair leaves the work as
        soon as its decision flips (early exit); the curve then stops at the flip.
        """
        B, T = batch.input_ids.shape
        device = batch.device
        R = len(ranking.scores)
        items = batch.items
        n = items.sum(-1)
        passes = None
        if self.level == "attention":
            passes = AttentionVariants(self.model, tap, batch, min(layers), runner, prefix=self.prefix,
                                       readout=self.readout, autocast=self.dtype)
            logits, _ = passes.original()
            p_orig = probs_of(logits)
        else:
            def original(start: int, stop: int) -> torch.Tensor:
                return self._forward(batch.index_rows(torch.arange(start, stop, device=device)), None, tap, layers,
                                     replacement, forwards=forwards)

            p_orig = runner.run(B, original, seq_len=T, device=device)
        try:
            return self._variant_rounds(batch, ranking, runner, passes, layers, replacement, p_orig, full_curve,
                                        forwards)
        finally:
            if passes is not None:
                passes.__exit__(None, None, None)

    def _variant_rounds(self, batch, ranking, runner, passes, layers, replacement, p_orig, full_curve, forwards=None):
        B, T = batch.input_ids.shape
        device = batch.device
        R = len(ranking.scores)
        items = batch.items
        pred = p_orig.argmax(-1)
        p0 = p_orig.gather(1, pred[:, None]).squeeze(1)
        rank = torch.cat([_ranks(s, items) for s in ranking.scores])  # [E, T]
        src = torch.arange(B, device=device).repeat(R)  # e -> example row
        E = R * B
        n_e = items.sum(-1).repeat(R)
        real_len = (batch.attention_mask != 0).sum(-1).repeat(R)
        never = T + 1
        curve = torch.full((E, T + 1), float("nan"), dtype=torch.float32, device=device)
        curve[:, 0] = p0[src].float()
        first = torch.full((E,), never, dtype=torch.long, device=device)
        n_host = n_e.cpu()  # one synchronisation: the number of variants of every pair
        bucket = self.level == "token" and not batch.left_padded
        len_host = real_len.cpu() if bucket else None
        chunk = runner.chunk_size(T, device)

        def run_pairs(e_idx: torch.Tensor, k_idx: torch.Tensor, e_host: torch.Tensor, k_host: torch.Tensor) -> None:
            """Run the variants (e, k) and record their probabilities and flips."""
            total = int(e_host.numel())
            if total == 0:
                return
            if bucket:
                # the variants' real lengths after erasing, longest first: chunks hold rows of similar length
                lengths = len_host[e_host] - (k_host if replacement is None else 0)
                order_host = torch.sort(-lengths, stable=True).indices
                lengths = lengths[order_host]
                order = order_host.to(device)
                e_idx, k_idx = e_idx[order], k_idx[order]
            else:
                lengths = None

            def variants(start: int, stop: int) -> torch.Tensor:
                e = e_idx[start:stop]
                k = k_idx[start:stop]
                rows = src[e]
                # at least one position: a row whose every token is an item is all padding once they are deleted
                width = max(int(lengths[start]), 1) if lengths is not None else T
                erase = batch.items.index_select(0, rows) & (rank.index_select(0, e) < k[:, None])
                if passes is not None:
                    out = passes.run(rows, [("zero", erase, {"layers": tuple(layers), "heads": self.heads})])
                    return probs_of(out)
                return self._forward(batch.index_rows(rows), erase, None, layers, replacement, width=width,
                                     forwards=forwards)

            breaks = length_breaks(lengths) if lengths is not None else ()
            probs = runner.run(total, variants, seq_len=T, device=device, breaks=breaks, widths=lengths)
            target = pred[src][e_idx]
            curve[e_idx, k_idx] = probs.gather(1, target[:, None]).squeeze(1).float()
            flip = probs.argmax(-1) != target
            first.scatter_reduce_(0, e_idx, torch.where(flip, k_idx, torch.full_like(k_idx, never)), reduce="amin")

        # the removal counts of each pair: k = 1..n_e, or the distinct fixed-fraction counts (ascending)
        if self.steps is None:
            counts = n_host

            def k_at(e_host: torch.Tensor, i_host: torch.Tensor) -> torch.Tensor:
                return i_host + 1
        else:
            ks = step_counts(n_host, self.steps).sort(-1).values  # [E, S]
            distinct = torch.ones_like(ks, dtype=torch.bool)
            distinct[:, 1:] = ks[:, 1:] != ks[:, :-1]
            distinct &= n_host[:, None] > 0
            counts = distinct.sum(-1)
            table = ks.gather(1, torch.sort((~distinct).to(torch.int8), dim=-1, stable=True).indices)

            def k_at(e_host: torch.Tensor, i_host: torch.Tensor) -> torch.Tensor:
                return table[e_host, i_host]

        if full_curve:
            e_host = torch.repeat_interleave(torch.arange(E), counts)
            offsets = torch.cumsum(counts, 0) - counts
            k_host = k_at(e_host, torch.arange(int(counts.sum())) - offsets[e_host])
            run_pairs(e_host.to(device), k_host.to(device), e_host, k_host)
        else:
            active = torch.arange(E)
            i_start = 0
            while active.numel():
                per = max(1, -(-chunk // int(active.numel())))  # about one chunk of variants per round
                e_host = active.repeat_interleave(per)
                i_host = torch.arange(i_start, i_start + per).repeat(int(active.numel()))
                keep = i_host < counts[e_host]
                e_host, i_host = e_host[keep], i_host[keep]
                k_host = k_at(e_host, i_host)
                run_pairs(e_host.to(device), k_host.to(device), e_host, k_host)
                i_start += per
                first_host = first.cpu()  # one synchronisation per round
                active = active[(first_host[active] == never) & (counts[active] > i_start)]
            # a round may run a few steps past the flip: drop them, so the result does not depend on the chunking
            past = torch.arange(T + 1, device=device)[None, :] > first[:, None]
            curve.masked_fill_(past, float("nan"))
        return pred, curve.view(R, B, T + 1), first.view(R, B)

    def _result(self, batch: Batch, ranking: Ranking, pred, curve, first, name) -> ErasureResult:
        R, B, T1 = curve.shape
        n = batch.n_items
        nf = n.to(curve.dtype)
        flipped_o = first <= n[None, :]  # [R, B]
        n_removed_o = torch.where(flipped_o, first.to(curve.dtype), torch.full_like(curve[..., 0], float("nan")))
        p0 = curve[..., :1]
        if self.steps is None:
            diff = torch.where(torch.isnan(curve), torch.zeros_like(curve), p0 - curve)
            aopc_o = diff.sum(-1) / (nf[None, :] + 1)  # [R, B]
            complete = (~torch.isnan(curve)).sum(-1) == (n[None, :] + 1)  # an early-exit curve stops at the flip
        else:  # ERASER's AOPC over the steps (+ the k = 0 term), once per step
            ks = step_counts(n, self.steps)  # [B, S]
            at = curve.gather(2, ks[None].expand(R, -1, -1))  # [R, B, S]
            aopc_o = (p0 - at).sum(-1) / (len(self.steps) + 1)
            complete = ~torch.isnan(at).any(-1)
        aopc_o = torch.where(complete, aopc_o, torch.full_like(aopc_o, float("nan")))
        if R == 1:
            n_removed = n_removed_o[0]
        else:
            n_removed = torch.nanmean(n_removed_o, dim=0)  # NaN where no order flipped
        return ErasureResult(
            method=name or ranking.name,
            level=self.level,
            erase=self.erase if self.level == "token" else None,
            n_items=n,
            prediction=pred,
            n_removed=n_removed,
            fraction_removed=n_removed / nf,
            flipped=flipped_o.any(0),
            curve=curve.mean(0),
            aopc=aopc_o.mean(0),
            scores=None if ranking.random else ranking.scores[0],
            items=batch.items,
            input_ids=batch.input_ids,
            n_removed_per_order=n_removed_o.t().contiguous(),
            aopc_per_order=aopc_o.t().contiguous(),
            order_scores=list(ranking.scores),
            steps=self.steps,
        )
