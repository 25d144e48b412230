"""Randomly permuted attention (Jain & Wallace 2019, §4.2).

Jain & Wallace's ``permute_attn(num_perm=100)`` shuffles the attention weights over the real tokens only
(``np.random.permutation(L−2)+1``: ``<SOS>``, ``<EOS>`` and padding stay in place), re-runs the decoder and records
``|ŷ_perm − ŷ|`` (binary, mean over outputs) or ``½Σ|softmax diff|`` (QA) — the total variation distance between the
output distributions. ``PlottingBC.plot_permutations`` plots, per instance, the *median* over the permutations against
the instance's maximum attention weight, binned into ``[0, .25), [.25, .5), [.5, .75), [.75, 1]``, by predicted class
(violin plots; there is no numeric table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

import torch
from torch import nn

from attnfaith._inputs import call_model, probs_of
from attnfaith._state import model_guard
from attnfaith.attention import AttentionTap, real_key_permutation
from attnfaith.evaluators._base import Evaluator, max_attention_of
from attnfaith.evaluators._variants import AttentionVariants
from attnfaith.evaluators.result import Result, bins_markdown
from attnfaith.evaluators.selection import check_layer, check_query, resolve_query
from attnfaith.metrics import bin_summary, tvd
from attnfaith.seeding import check_seed, example_generators

__all__ = ["PermutationTVD", "PermutationTVDResult"]


@dataclass
class PermutationTVDResult(Result):
    """Output change under random permutations of one layer's attention.

    Attributes:
        tvd: ``[B, n_permutations]``: TVD between the output distribution with permutation ``i`` and the original
            (NaN for a row without items: nothing to permute).
        median: ``[B]`` median over the permutations (numpy's median: mean of the two middle values for even n),
            the statistic Jain & Wallace plot.
        max: ``[B]`` max over the permutations.
        max_attention: ``[B]`` the largest attention weight on an item (see :class:`PermutationTVD`).
        permutations: LongTensor ``[B, n, T]`` (or ``[B, n, H, T]`` with ``per_head``): ``perm[b, i, k]`` is the key
            whose weight moved to key ``k`` (the tap's ``"permute"`` intervention), identity off the items.
        predicted: ``[B]`` the model's predicted class.
        items: ``[B, T]`` the shuffled positions.
        layer: the permuted layer (non-negative index in the tap's call order).
        per_head: one permutation per head.

    In :meth:`records`, ``permutations`` are cut to the example's items and given as item indices.
    """

    layout: ClassVar[dict[str, str]] = {"tvd": "row", "median": "row", "max": "row", "max_attention": "row",
                                        "permutations": "key", "predicted": "row", "items": "token"}
    positions: ClassVar[tuple[str, ...]] = ("permutations",)

    tvd: torch.Tensor
    median: torch.Tensor
    max: torch.Tensor
    max_attention: torch.Tensor
    permutations: torch.Tensor
    predicted: torch.Tensor
    items: torch.Tensor
    layer: int
    per_head: bool = False

    def summary(self) -> dict[str, dict[str, float]]:
        """Median-over-permutations TVD per max-attention bin (JW's violin plot, as numbers): n, mean and median
        of the per-example medians, per bin and ``"all"``."""
        return bin_summary(self.median, self.max_attention, "tvd")

    def to_markdown(self) -> str:
        return bins_markdown(
            f"Permuted attention, layer {self.layer}: median TVD over {self.tvd.shape[1]} permutations "
            "(Jain & Wallace 2019, §4.2)", self.summary(), "tvd")

    @classmethod
    def join(cls, name: str, values: list[torch.Tensor]) -> torch.Tensor:
        """As :meth:`Result.join`; ``permutations`` are padded with the identity (a padded key maps to itself)."""
        if name != "permutations":
            return super().join(name, values)
        width = max(p.shape[-1] for p in values)
        padded = []
        for p in values:
            if p.shape[-1] < width:
                extra = torch.arange(p.shape[-1], width, device=p.device).expand(*p.shape[:-1], -1)
                p = torch.cat([p, extra], dim=-1)
            padded.append(p)
        return torch.cat(padded)


class PermutationTVD(Evaluator):
    """Randomly permute one layer's attention over the items and measure the output change (Jain & Wallace 2019).

    For each example ``b`` and permutation ``i`` (``i < n_permutations``), the layer's attention
    ``α[b, h, q, k]`` becomes ``α[b, h, q, π_{b,i}(k)]`` for every head ``h`` and query row ``q`` (the same key
    permutation for all heads by default; ``per_head=True`` draws one per head), where ``π_{b,i}`` shuffles the items
    of ``b`` (real, non-special tokens, or the caller's ``mask``) and leaves every other key in place — Jain &
    Wallace's ``np.random.permutation(L−2)+1`` (special tokens and padding never move). In a causal layer, weight
    moved onto a future key is dropped and the row renormalised (the tap's ``"permute"``). Then

        tvd[b, i] = TVD(p(x_b), p(x_b | α permuted by π_{b,i})) = ½ Σ_c |p_c − p'_c|

    which is JW's ``|ŷ_perm − ŷ|`` for their one-output binary models and their QA value. ``target`` is not used
    (the TVD covers every class); ``attributions`` must be None (the attention itself is tested).

    ``max_attention[b]``: the largest weight on an item of the layer's attention reduced as
    :class:`attnfaith.attr.AttentionAttribution` does (mean over heads of the query row ``query``; the single row of
    one-query attention such as JW's additive attention).

    Permutations are drawn per example on the CPU (:func:`attnfaith.attention.real_key_permutation`): row ``b``
    draws ``torch.rand(n_permutations, [H,] k_b)`` for its ``k_b`` items from its own generator,
    ``torch.Generator().manual_seed(example_seed(seed, example_ids[b]))`` (:mod:`attnfaith.seeding`), so the same
    seed and example id give the same permutations and results whatever the batch-mates, ``max_examples_per_batch``,
    padding and device; they are returned so any entry can be recomputed.

    Args:
        model: any model :class:`attnfaith.AttentionTap` reaches.
        layer: the attention layer (call order; ``-1`` the last: for T5/BART the last decoder cross-attention).
            Its keys must be the input tokens.
        n_permutations: permutations per example (JW: 100).
        seed: seed of the permutations.
        per_head: one permutation per head instead of one shared by all heads.
        query: the query row for ``max_attention``: ``"auto"`` (default: ``"last"`` for causal and cross-attention
            layers, ``"cls"`` otherwise), ``"cls"``, ``"last"`` or an int.
        max_examples_per_batch, memory_budget: see :class:`attnfaith.evaluators.Evaluator`.
        prefix: run the variants through the layers from ``layer`` up only, from a cache of the hidden states below
            (:class:`attnfaith.attention.prefix.PrefixCache`; complete forwards where it does not apply).
        dtype: ``torch.autocast`` dtype for the forwards (e.g. ``torch.bfloat16`` on CUDA); None: the model's.
        readout: when ``layer`` is the last one, compute only the rows of the last block that the classification
            head reads (:class:`attnfaith.attention.readout.ReadoutCache`, where it applies and its checks pass; else
            the prefix cache). Same results up to float rounding.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: int = -1,
        n_permutations: int = 100,
        seed: int = 0,
        per_head: bool = False,
        *,
        query: Any = "auto",
        max_examples_per_batch: int | None = None,
        memory_budget: int | None = None,
        prefix: bool = True,
        dtype: torch.dtype | None = None,
        readout: bool = True,
    ) -> None:
        super().__init__(model, max_examples_per_batch=max_examples_per_batch, memory_budget=memory_budget)
        self.prefix = bool(prefix)
        self.readout = bool(readout)
        self.dtype = dtype
        self.layer = check_layer(layer)
        if isinstance(n_permutations, bool) or not isinstance(n_permutations, int):
            raise TypeError(f"n_permutations must be an int, got {n_permutations!r}")
        if n_permutations < 1:
            raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
        self.n_permutations = n_permutations
        self.seed = check_seed(seed)
        self.per_head = bool(per_head)
        self.query = check_query(query, single_row=True)

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
        example_ids: Any = None,
    ) -> PermutationTVDResult:
        """Run the permutations (see the class docstring and :meth:`Evaluator.evaluate`); ``target`` is not used
        and ``attributions`` must be None. ``example_ids``: the rows' global example ids (LongTensor or sequence
        ``[B]``; default ``0..B-1``), which seed each row's permutations."""
        if attributions is not None:
            raise ValueError("attributions: PermutationTVD permutes the model's own attention and takes no "
                             "attributions (leave it None)")
        batch = self.prepare(inputs, additional_forward_args, mask=mask, tokenizer=tokenizer, special_ids=special_ids)
        runner = self.runner_for(max_examples_per_batch)
        model = self.model
        B, T = batch.input_ids.shape
        gens = example_generators(self.seed, example_ids, B)
        n = self.n_permutations
        with model_guard(model), torch.inference_mode(), AttentionTap(model, capture=[self.layer]) as tap:
            if not tap.layers:
                call_model(model, batch.index_rows(torch.zeros(1, dtype=torch.long, device=batch.device)))
            layer = tap.resolve_layer(self.layer)
            query = resolve_query(self.query, tap.layers, [layer])
            with AttentionVariants(model, tap, batch, layer, runner, prefix=self.prefix, readout=self.readout,
                                   autocast=self.dtype) as passes:
                logits, att = passes.original(capture_layer=layer)
                if att.shape[-1] != T:
                    raise ValueError(
                        f"layer {self.layer}: its keys ({att.shape[-1]}) are not the {T} input tokens; choose a "
                        "layer whose keys are the inputs"
                    )
                p0 = probs_of(logits)
                H = att.shape[1]
                perms = real_key_permutation(batch.items, n, generator=gens, heads=H if self.per_head else None)
                flat = perms.reshape(B * n, *perms.shape[2:])
                rows = torch.arange(B, device=batch.device).repeat_interleave(n)
                tap.capture = None

                def run(start: int, stop: int) -> torch.Tensor:
                    r = rows[start:stop]
                    out = probs_of(passes.run(r, [("permute", flat[start:stop], {"layers": layer})]))
                    return tvd(out, p0.index_select(0, r)).float()

                values = runner.run(B * n, run, seq_len=T, device=batch.device)
        # a row without items has nothing to permute: NaN, as every evaluator reports it
        no_items = (batch.n_items == 0).to(values.device)
        values = values.view(B, n).masked_fill(no_items[:, None], float("nan"))
        return PermutationTVDResult(
            tvd=values,
            median=values.double().quantile(0.5, dim=1).to(values.dtype),
            max=values.max(dim=1).values,
            max_attention=max_attention_of(att, query, batch).masked_fill(no_items, float("nan")),
            permutations=perms,
            predicted=p0.argmax(dim=-1),
            items=batch.items.clone(),
            layer=layer,
            per_head=self.per_head,
        )
