"""Single-weight erasure: Serrano & Smith (2019), "Is Attention Interpretable?", section 4.

For each example, two variants of the chosen attention layer(s) are run:

* **top**: the attention weight on the highest-ranked item ``i*`` (by default the highest attention weight; ties:
  lower position) is set to 0 on every query row and head chosen, and each row is L1-renormalised
  (``test_model.py::make_zeroed_out_copies_…``: ``α_{i*} = 0``, ``F.normalize(p=1)``);
* **random**: the same for one item ``r`` drawn uniformly among the example's *other* items.

Per example: ``js_top`` / ``js_random`` = JS divergence, in nats, between the output distribution of the variant and
the original (``get_js_div_of_dists``: softmax of the logits, natural log, computed in log space;
:func:`attnfaith.metrics.js_from_logits`; a one-logit model uses ``[1−σ, σ]``), ``delta_js = js_top − js_random``
(``get_dec_flip_stats_for_rand_nontop``), and whether each variant changes the argmax (decision flip).

Deliberate difference: Serrano & Smith draw ``random.randint(1, len−1)`` and use it directly as a *sequence position*,
which can coincide with ``i*``. Here ``r`` really is never ``i*``: it is the argmax of i.i.d. ``U[0, 1)`` draws
drawn per example on the CPU for its items from its own generator (``example_seed(seed, example_ids[b])``,
:mod:`attnfaith.seeding`), then moved to the device, over the items other than ``i*``.
Examples with a single item have no random variant (``random_index = −1``, ``js_random = NaN``,
``flip_random = False``) and, as in Serrano & Smith's ``get_vsrand_2x2_decflip_jointdist`` (``seq_len > 1``), are
left out of the 2×2 table and of the means over the random variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Sequence

import torch
from torch import nn

from attnfaith._inputs import logits_of
from attnfaith._state import model_guard
from attnfaith.attention import AttentionTap
from attnfaith.evaluators._base import Evaluator, check_items
from attnfaith.evaluators._variants import AttentionVariants
from attnfaith.evaluators.rankings import resolve_ranking
from attnfaith.evaluators.result import Result
from attnfaith.evaluators.selection import check_heads, check_layers, check_query, resolve_attention_layers
from attnfaith.metrics import descending_order, js_from_logits, jsd
from attnfaith.results import markdown_table
from attnfaith.seeding import check_example_ids, check_seed, example_generators, rand_at

__all__ = ["SingleWeightErasure", "SingleWeightResult", "output_js"]


def output_js(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """JS divergence (nats) of two output distributions given as logits ``[B, C]`` (one logit: ``[1−σ, σ]``)."""
    if logits_a.dim() == 1:
        logits_a, logits_b = logits_a[:, None], logits_b[:, None]
    if logits_a.shape[-1] == 1:
        pa = torch.sigmoid(logits_a.float())
        pb = torch.sigmoid(logits_b.float())
        return jsd(torch.cat([1 - pa, pa], -1), torch.cat([1 - pb, pb], -1))
    return js_from_logits(logits_a.float(), logits_b.float())


def _argmax(logits: torch.Tensor) -> torch.Tensor:
    if logits.dim() == 1:
        logits = logits[:, None]
    if logits.shape[-1] == 1:
        return (logits[:, 0] > 0).long()  # [1−σ, σ]: class 1 iff σ > 0.5 (ties → class 0, as argmax does)
    return logits.argmax(-1)


@dataclass
class SingleWeightResult(Result):
    """Single-weight erasure (Serrano & Smith 2019, section 4); see :mod:`attnfaith.evaluators.single`.

    Attributes (``[B]`` per example):
        top_index: position of the highest-ranked item ``i*``.
        random_index: position of the random other item (−1 when the example has a single item).
        js_top, js_random: JS divergence (nats) of the output from the original; ``js_random`` NaN without a random
            item.
        delta_js: ``js_top − js_random``.
        flip_top, flip_random: whether the decision (argmax) changed.
        prediction: the original predicted class.
        has_random: the example has at least two items (a random variant exists).
        flip_table: LongTensor ``[2, 2]`` of counts over the examples with a random variant, Serrano & Smith's
            layout: rows = removing ``i*`` flips the decision (yes, no), columns = removing the random item flips it
            (yes, no).
        scores: ``[B, T]`` the ranking scores.
        items: ``[B, T]`` the items (None when not recorded); :meth:`records` cuts ``scores`` to them and gives
            ``top_index`` / ``random_index`` as item indices.
    """

    layout: ClassVar[dict[str, str]] = {
        "top_index": "row", "random_index": "row", "js_top": "row", "js_random": "row", "delta_js": "row",
        "flip_top": "row", "flip_random": "row", "prediction": "row", "has_random": "row", "scores": "token",
        "items": "token",
    }
    summed: ClassVar[tuple[str, ...]] = ("flip_table",)
    positions: ClassVar[tuple[str, ...]] = ("top_index", "random_index")

    method: str
    top_index: torch.Tensor
    random_index: torch.Tensor
    js_top: torch.Tensor
    js_random: torch.Tensor
    delta_js: torch.Tensor
    flip_top: torch.Tensor
    flip_random: torch.Tensor
    prediction: torch.Tensor
    has_random: torch.Tensor
    flip_table: torch.Tensor
    scores: torch.Tensor
    items: torch.Tensor | None = None

    def summary(self) -> dict[str, Any]:
        """Means and flip shares over the examples with a random variant (``n_compared``: at least two items, as
        Serrano & Smith's ``seq_len > 1``), and the 2×2 table's counts."""
        has = self.has_random.detach().cpu()
        n = int(has.sum())
        js_top = self.js_top.detach().double().cpu()
        js_rand = self.js_random.detach().double().cpu()
        delta = self.delta_js.detach().double().cpu()
        t = self.flip_table.detach().cpu()

        def mean(x: torch.Tensor) -> float:
            return float(x.mean()) if x.numel() else float("nan")

        return {
            "method": self.method,
            "n_examples": len(self),
            "n_compared": n,
            "mean_js_top": mean(js_top[has]),
            "mean_js_random": mean(js_rand[has]),
            "mean_delta_js": mean(delta[has]),
            "share_delta_js_positive": mean((delta[has] > 0).double()),
            "flip_top": mean(self.flip_top.detach().cpu()[has].double()),
            "flip_random": mean(self.flip_random.detach().cpu()[has].double()),
            "both_flip": int(t[0, 0]),
            "only_top_flips": int(t[0, 1]),
            "only_random_flips": int(t[1, 0]),
            "neither_flips": int(t[1, 1]),
        }

    def to_markdown(self) -> str:
        s = self.summary()
        head = markdown_table(
            ["ranking", "mean JS top", "mean JS random", "mean ΔJS", "ΔJS > 0", "top flips", "random flips",
             "compared"],
            [[s["method"], s["mean_js_top"], s["mean_js_random"], s["mean_delta_js"], s["share_delta_js_positive"],
              s["flip_top"], s["flip_random"], s["n_compared"]]],
        )
        table = markdown_table(
            ["remove i* flips? \\ remove random flips?", "yes", "no"],
            [["yes", str(s["both_flip"]), str(s["only_top_flips"])],
             ["no", str(s["only_random_flips"]), str(s["neither_flips"])]],
        )
        return f"**SingleWeightErasure**\n\n{head}\n\n{table}"


class SingleWeightErasure(Evaluator):
    """Zero the top item's attention weight, and separately a random other item's (Serrano & Smith 2019, §4).

    Args:
        model: a HuggingFace model or a custom model (see :class:`attnfaith.AttentionTap`).
        layer: the attention layer(s) erased and read by the attention-based rankings: an int (default ``-1``), a
            list of ints or ``"all"`` (every layer whose keys are the input tokens).
        heads: None (every head), an int or a list of heads.
        seed: seed of the random item (and of the ``"random"`` ranking).
        query: query row the attention-based rankings read (``"auto"``, ``"cls"``, ``"last"``, ``"mean"``, int).
        modules: module names for :class:`attnfaith.AttentionTap` (custom models).
        max_examples_per_batch, memory_budget: see :class:`attnfaith.evaluators._base.Evaluator`.
        prefix: run the variants through the blocks from the first erased layer up only, from a cache of the hidden
            states below (:class:`attnfaith.attention.prefix.PrefixCache`; complete forwards where it does not
            apply). Same results up to float rounding.
        readout: on the last layer, compute only the rows of the last block that the classification head reads
            (:class:`attnfaith.attention.readout.ReadoutCache`, where it applies and its checks pass; else the prefix
            cache). Same results up to float rounding.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: Any = -1,
        heads: Any = None,
        *,
        seed: int = 0,
        query: Any = "auto",
        modules: Sequence[str] | None = None,
        max_examples_per_batch: int | None = None,
        memory_budget: int | None = None,
        prefix: bool = True,
        readout: bool = True,
    ) -> None:
        super().__init__(model, max_examples_per_batch=max_examples_per_batch, memory_budget=memory_budget)
        self.seed = check_seed(seed)
        self.prefix = bool(prefix)
        self.readout = bool(readout)
        self.layer = check_layers(layer, "layer")
        self.heads = check_heads(heads, "heads")
        self.query = check_query(query)
        self.modules = list(modules) if modules is not None else None

    def random_items(self, items: torch.Tensor, top: torch.Tensor,
                     example_ids: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(random_index [B], has_random [B])``: one item per row drawn uniformly among ``items`` other than
        ``top``: row ``b`` draws ``U[0, 1)`` values for its ``k_b`` items (in position order) on the CPU from
        ``torch.Generator().manual_seed(example_seed(self.seed, example_ids[b]))`` (:mod:`attnfaith.seeding`;
        ``example_ids`` default ``0..B-1``) and takes the item other than ``top`` with the largest; −1 where there
        is no other item."""
        B, T = items.shape
        u = rand_at(items, example_generators(self.seed, example_ids, B)).to(items.device)
        pos = torch.arange(T, device=items.device)
        cand = items & (pos[None, :] != top[:, None])
        has = cand.any(-1)
        idx = torch.where(cand, u, torch.full_like(u, -1.0)).argmax(-1)
        return torch.where(has, idx, torch.full_like(idx, -1)), has

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
    ) -> SingleWeightResult:
        """Run the test (see :meth:`Evaluator.evaluate`). ``attributions`` chooses ``i*`` (None or ``"attention"``:
        the highest attention weight of the evaluator's layer); any ranking :class:`attnfaith.ErasureFlip` accepts
        works (``"random"`` uses one order per example seeded with ``example_seed(seed + 1, example_ids[b])``,
        independent of the random item's draw). ``example_ids``: the rows' global example ids (LongTensor or
        sequence ``[B]``; default ``0..B-1``)."""
        if attributions is None:
            attributions = "attention"
        batch = self.prepare(inputs, additional_forward_args, mask=mask, tokenizer=tokenizer, special_ids=special_ids)
        check_items(batch, "inputs")
        model = self.model
        B, T = batch.input_ids.shape
        ids = check_example_ids(example_ids, B)
        device = batch.device
        with model_guard(model):
            layers, query = resolve_attention_layers(model, batch, self.layer, self.heads, self.modules, self.query)
            ranking = resolve_ranking(attributions, model, batch, target, layers=layers, heads=self.heads,
                                      query=query, n_random=1, seed=self.seed + 1, name="attributions",
                                      example_ids=ids)
            scores = ranking.scores[0]
            top = descending_order(scores, batch.items).order[:, 0]
            rand, has = self.random_items(batch.items, top, ids)
            # variants: B "top" variants, then one "random" variant per example that has one
            v_rows = torch.cat([torch.arange(B, device=device), has.nonzero().flatten()])
            v_pos = torch.cat([top, rand[has]])
            n_var = int(v_rows.shape[0])
            pos = torch.arange(T, device=device)
            runner = self.runner_for(max_examples_per_batch)
            with torch.inference_mode(), AttentionTap(model, capture=None, modules=self.modules) as tap, \
                    AttentionVariants(model, tap, batch, min(layers), runner, prefix=self.prefix,
                                      readout=self.readout) as passes:
                orig = logits_of(passes.original()[0]).float()

                def variants(start: int, stop: int) -> torch.Tensor:
                    erase = pos[None, :] == v_pos[start:stop, None]
                    iv = [("zero", erase, {"layers": tuple(layers), "heads": self.heads})]
                    return logits_of(passes.run(v_rows[start:stop], iv)).float()

                var = runner.run(n_var, variants, seq_len=T, device=device)
        if orig.dim() == 1:
            orig, var = orig[:, None], var[:, None]
        pred = _argmax(orig)
        js_all = output_js(var, orig.index_select(0, v_rows))
        flip_all = _argmax(var) != pred.index_select(0, v_rows)
        js_top = js_all[:B]
        flip_top = flip_all[:B]
        js_random = torch.full((B,), float("nan"), dtype=js_all.dtype, device=device)
        js_random[has] = js_all[B:]
        flip_random = torch.zeros(B, dtype=torch.bool, device=device)
        flip_random[has] = flip_all[B:]
        ft, fr = flip_top[has], flip_random[has]
        table = torch.stack([
            torch.stack([(ft & fr).sum(), (ft & ~fr).sum()]),
            torch.stack([(~ft & fr).sum(), (~ft & ~fr).sum()]),
        ])
        return SingleWeightResult(
            method=ranking.name,
            top_index=top,
            random_index=rand,
            js_top=js_top,
            js_random=js_random,
            delta_js=js_top - js_random,
            flip_top=flip_top,
            flip_random=flip_random,
            prediction=pred,
            has_random=has,
            flip_table=table,
            scores=scores,
            items=batch.items.clone(),
        )
