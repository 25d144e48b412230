"""What the ERASER-style evaluators share: batched forwards of erased variants, and the top-k bins of a ranking.

:class:`ErasedForwards` runs variants of a batch — a source row with some of its items erased, or with its input
embeddings scaled — through :class:`attnfaith.engine.VariantRunner`, never one forward per variant:

* ``level="token"``, ``erase="delete"``: the erased tokens leave the sequence (:func:`attnfaith.perturb.delete_positions`,
  ``trim=False``); on right-padded inputs the variants are sorted by their remaining length and every chunk is cut
  to its longest row (length buckets, :func:`attnfaith.engine.length_breaks`), the results put back in order;
* ``level="token"``, an id (``"mask"`` → the mask token, else padding; ``"pad"`` → the padding id; an int): that id
  replaces the erased tokens (:func:`attnfaith.perturb.replace_positions`);
* ``level="attention"``: the attention weights on the erased keys are zeroed in the chosen layers and heads and each
  row renormalised (the tap's ``"zero"`` intervention, as :class:`attnfaith.ErasureFlip`), through
  :class:`attnfaith.evaluators._variants.AttentionVariants` (prefix cache);
* :meth:`ErasedForwards.run_scaled`: the output of the input embedding module
  (:func:`attnfaith.attention.model_facts.input_embedding_module`) multiplied by a factor per token.

:class:`TopKEvaluator` is the base of :class:`attnfaith.Comprehensiveness`, :class:`attnfaith.Sufficiency` and
:class:`attnfaith.LogOdds`: per example and bin ``j``, ``k_j`` items (:func:`attnfaith.metrics.top_fraction_sizes`)
taken in descending score order (ties: the lower position first, :func:`attnfaith.metrics.descending_order`), and the
probability of the originally predicted class when those items are erased (``keep=False``) or when every other item
is (``keep=True``). :class:`TopKResult` holds what they give.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Mapping, Sequence

import torch
from torch import nn

from attnfaith._inputs import Batch, probs_of
from attnfaith._state import local_forward_hook, model_guard
from attnfaith.attention import AttentionTap
from attnfaith.attention.model_facts import input_embedding_module
from attnfaith.attention.readout_forward import ReadoutForwards
from attnfaith.engine import VariantRunner, length_breaks
from attnfaith.evaluators._base import Evaluator, check_items
from attnfaith.evaluators._variants import AttentionVariants, call_model_autocast
from attnfaith.evaluators.rankings import Ranking, check_n_random, resolve_ranking
from attnfaith.evaluators.result import Result
from attnfaith.evaluators.selection import check_heads, check_layers, check_query, resolve_attention_layers
from attnfaith.metrics import descending_order
from attnfaith.metrics.eraser import ERASER_FRACTIONS, top_fraction_sizes
from attnfaith.perturb import check_erase, delete_positions, erase_id, pad_id_of, replace_positions
from attnfaith.results import fmt_number, markdown_table
from attnfaith.seeding import check_seed

__all__ = ["ErasedForwards", "TopKEvaluator", "TopKResult", "item_ranks",
           "fraction_label"]

_LEVELS = ("attention", "token")


def item_ranks(scores: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``rank[b, t]``: the place of position ``t`` in the descending order of row ``b`` (0 = the top item; ties: the
    lower position first; positions that are not items come after every item)."""
    order = descending_order(scores, items).order
    B, T = order.shape
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(T, device=order.device).expand(B, T))
    return rank


def fraction_label(f: float) -> str:
    """``0.05`` → ``"5%"``."""
    return f"{100 * f:g}%"


class ErasedForwards:
    """Output distributions of erased variants of ``batch``, run in chunks (see the module docstring).

    Use as a context manager (it opens the attention tap at ``level="attention"``); :meth:`original` first.

    Args:
        model, batch, runner: the model, the normalised batch, the batching engine.
        level: ``"token"`` or ``"attention"``.
        replacement: the id erased tokens become (None: deletion), token level only.
        layers, heads, modules: the attention level's layers (resolved indices), heads and tap modules.
        prefix, dtype: the prefix cache at the attention level; an autocast dtype for every forward.
        readout: the last block at the rows the head reads only, where that applies: per variant at the attention
            level on the last layer (:class:`attnfaith.attention.readout.ReadoutCache`), in every forward at the
            token level (:class:`attnfaith.attention.readout_forward.ReadoutForwards`; not with ``dtype``).
    """

    def __init__(self, model: nn.Module, batch: Batch, runner: VariantRunner, *, level: str = "token",
                 replacement: int | None = None, layers: Sequence[int] | None = None, heads: Any = None,
                 modules: Sequence[str] | None = None, prefix: bool = True, dtype: torch.dtype | None = None,
                 readout: bool = True) -> None:
        self.model, self.batch, self.runner = model, batch, runner
        self.level, self.replacement = level, replacement
        self.layers = tuple(layers) if layers else ()
        self.heads, self.modules, self.prefix, self.dtype = heads, modules, prefix, dtype
        self.readout = bool(readout)
        self.forwards: ReadoutForwards | None = None
        self.tap: AttentionTap | None = None
        self.passes: AttentionVariants | None = None

    def __enter__(self) -> "ErasedForwards":
        if self.level == "attention":
            self.tap = AttentionTap(self.model, capture=None, modules=self.modules)
            self.tap.__enter__()
            self.passes = AttentionVariants(self.model, self.tap, self.batch, min(self.layers), self.runner,
                                            prefix=self.prefix, readout=self.readout, autocast=self.dtype)
        else:
            self.forwards = ReadoutForwards(self.model, enabled=self.readout and self.dtype is None).__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.passes is not None:
            self.passes.__exit__(*exc)
            self.passes = None
        if self.tap is not None:
            self.tap.__exit__(*exc)
            self.tap = None
        if self.forwards is not None:
            self.forwards.__exit__(*exc)
            self.forwards = None

    def _call(self, sub: Batch) -> torch.Tensor:
        if self.forwards is not None and self.dtype is None:
            return probs_of(self.forwards(sub))
        return probs_of(call_model_autocast(self.model, sub, self.dtype))

    def original(self) -> torch.Tensor:
        """``[B, C]``: the unmodified examples (primes the prefix cache at the attention level)."""
        B, T = self.batch.input_ids.shape
        if self.passes is not None:
            logits, _ = self.passes.original()
            return probs_of(logits)
        dev = self.batch.device
        return self.runner.run(B, lambda s, e: self._call(self.batch.index_rows(torch.arange(s, e, device=dev))),
                               seq_len=T)

    def run(self, rows: torch.Tensor, erase: torch.Tensor) -> torch.Tensor:
        """``[N, C]``: variant ``i`` is row ``rows[i]`` with the positions ``erase[i]`` (``[N, T]`` bool) erased."""
        B, T = self.batch.input_ids.shape
        N = int(rows.numel())
        if N == 0:
            return torch.empty(0, 2, device=self.batch.device)
        if self.passes is not None:
            iv = {"layers": self.layers, "heads": self.heads}
            return self.runner.run(N, lambda s, e: probs_of(self.passes.run(rows[s:e], [("zero", erase[s:e], iv)])),
                                   seq_len=T)
        if self.replacement is not None:
            return self.runner.run(N, lambda s, e: self._call(
                replace_positions(self.batch.index_rows(rows[s:e]), erase[s:e], self.replacement)), seq_len=T)
        pad = pad_id_of(self.model)
        if self.batch.left_padded:
            return self.runner.run(N, lambda s, e: self._call(
                delete_positions(self.batch.index_rows(rows[s:e]), erase[s:e], pad, trim=False)), seq_len=T)
        # length buckets: variants sorted by their remaining length, each chunk cut to its longest row
        real = self.batch.attention_mask != 0
        lengths = (real[rows] & ~erase).sum(-1).cpu()
        order_host = torch.sort(-lengths, stable=True).indices
        lengths = lengths[order_host]
        order = order_host.to(rows.device)

        def chunk(s: int, e: int) -> torch.Tensor:
            idx = order[s:e]
            varied = delete_positions(self.batch.index_rows(rows[idx]), erase[idx], pad, trim=False)
            return self._call(varied.truncate(max(int(lengths[s]), 1)))

        out = self.runner.run(N, chunk, seq_len=T, breaks=length_breaks(lengths))
        back = torch.empty_like(out)
        back[order] = out
        return back

    def run_scaled(self, rows: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``[N, C]``: row ``rows[i]`` with the output of the input embedding module multiplied by ``scale[i]``
        (``[N, T]``, one factor per token) — in this thread's forwards only
        (:func:`attnfaith._state.local_forward_hook`)."""
        T = self.batch.input_ids.shape[1]
        module = input_embedding_module(self.model)
        current: dict[str, torch.Tensor] = {}

        def hook(mod: nn.Module, args: Any, output: Any) -> Any:
            f = current.get("scale")
            if f is None or not isinstance(output, torch.Tensor) or tuple(output.shape[:2]) != tuple(f.shape):
                return None
            return output * f[..., None].to(output.dtype)

        def chunk(s: int, e: int) -> torch.Tensor:
            current["scale"] = scale[s:e]
            try:
                return self._call(self.batch.index_rows(rows[s:e]))
            finally:
                current.pop("scale", None)

        with local_forward_hook(module, hook):
            return self.runner.run(int(rows.numel()), chunk, seq_len=T)


# ----------------------------------------------------------------------------------------------------------------
# the result of the top-k evaluators
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class TopKResult(Result):
    """Comprehensiveness, sufficiency or log-odds of one ranking at the bins ``fractions``.

    Attributes:
        method: the ranking's label; ``metric``: ``"comprehensiveness"``, ``"sufficiency"`` or ``"log_odds"``.
        level, erase: how items were erased; ``fractions``, ``rounding``: the bins (see
            :func:`attnfaith.metrics.top_fraction_sizes`).
        n_items: ``[B]``; prediction: ``[B]`` the originally predicted class; probability: ``[B]`` its probability.
        sizes: ``[B, K]`` the number of top items of each bin.
        variant_probability: ``[B, K]`` the probability of ``prediction`` in each bin's variant (mean over orders).
        values: ``[B, K]`` the metric per bin (mean over the orders of the random ranking); NaN for an empty bin.
        aopc: ``[B]`` the mean of ``values`` over the bins (NaN bins left out).
        aopc_per_order: ``[B, R]``.
        scores: ``[B, T]`` the ranking's scores (None for the random ranking); items: ``[B, T]``.
    """

    layout: ClassVar[dict[str, str]] = {
        "n_items": "row", "prediction": "row", "probability": "row", "sizes": "row", "variant_probability": "row",
        "values": "row", "aopc": "row", "aopc_per_order": "row", "scores": "token", "items": "token",
    }

    method: str
    metric: str
    level: str
    erase: Any
    fractions: tuple[float, ...]
    rounding: str
    n_items: torch.Tensor
    prediction: torch.Tensor
    probability: torch.Tensor
    sizes: torch.Tensor
    variant_probability: torch.Tensor
    values: torch.Tensor
    aopc: torch.Tensor
    aopc_per_order: torch.Tensor
    scores: torch.Tensor | None
    items: torch.Tensor
    order_scores: list[torch.Tensor] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """``mean_aopc`` (mean over examples of the per-example AOPC, NaN left out) and ``mean_per_bin``
        (``{"1%": mean, ...}``)."""
        v = self.values.detach().double().cpu()
        a = self.aopc.detach().double().cpu()
        a = a[~torch.isnan(a)]
        return {
            "method": self.method, "metric": self.metric, "level": self.level,
            "erase": self.erase if self.level == "token" else None,
            "n_examples": len(self), "n_orders": int(self.aopc_per_order.shape[1]),
            "mean_aopc": float(a.mean()) if a.numel() else float("nan"),
            "mean_per_bin": {fraction_label(f): float(torch.nanmean(v[:, j])) if len(self) else float("nan")
                             for j, f in enumerate(self.fractions)},
        }

    def to_markdown(self) -> str:
        s = self.summary()
        header = ("ranking", f"{self.metric} AOPC", *s["mean_per_bin"], "examples")
        row = [s["method"], fmt_number(s["mean_aopc"]), *(fmt_number(x) for x in s["mean_per_bin"].values()),
               s["n_examples"]]
        return f"**{self.metric} ({self.level})**\n\n" + markdown_table(header, [row])


# ----------------------------------------------------------------------------------------------------------------
# the base evaluator
# ----------------------------------------------------------------------------------------------------------------


class TopKEvaluator(Evaluator):
    """Base of the top-k bin evaluators (see the module docstring; subclasses set :attr:`metric`, :attr:`keep`
    and :meth:`values`).

    Args:
        model: a HuggingFace model or a custom model (see :class:`attnfaith.AttentionTap`).
        fractions: the bins, fractions of each example's items (default: ERASER's 1, 5, 10, 20, 50 %).
        rounding: ``"ceil"`` (default) or ``"floor"`` (ferret's rule): see
            :func:`attnfaith.metrics.top_fraction_sizes`.
        level: ``"token"`` (erase tokens) or ``"attention"`` (zero their attention weights in ``layer`` and
            renormalise, as :class:`attnfaith.ErasureFlip`).
        erase: token level: ``"delete"``, ``"mask"`` (the mask token, else padding), ``"pad"`` or an int id.
        layer, heads, query, modules: the attention level's layer(s) and heads, and what the attention-based ranking
            names read (as :class:`attnfaith.ErasureFlip`).
        n_random, seed: the ``"random"`` ranking's orders (their values are averaged per example).
        max_examples_per_batch, memory_budget, prefix, dtype, readout: as :class:`attnfaith.ErasureFlip`.
    """

    metric: ClassVar[str] = ""
    keep: ClassVar[bool] = False
    default_erase: ClassVar[Any] = "delete"
    default_fractions: ClassVar[tuple[float, ...]] = ERASER_FRACTIONS

    def __init__(self, model: nn.Module, fractions: Sequence[float] | None = None, *, rounding: str = "ceil",
                 level: str = "token", erase: Any = None, layer: Any = -1, heads: Any = None, n_random: int = 5,
                 seed: int = 0, query: Any = "auto", modules: Sequence[str] | None = None,
                 max_examples_per_batch: int | None = None, memory_budget: int | None = None, prefix: bool = True,
                 dtype: torch.dtype | None = None, readout: bool = True) -> None:
        super().__init__(model, max_examples_per_batch=max_examples_per_batch, memory_budget=memory_budget)
        if level not in _LEVELS:
            raise ValueError(f"level must be 'token' or 'attention', got {level!r}")
        self.fractions = tuple(float(f) for f in (self.default_fractions if fractions is None else fractions))
        top_fraction_sizes(torch.ones(1, dtype=torch.long), self.fractions, rounding)  # checks both
        check_n_random(n_random)
        self.rounding, self.level = rounding, level
        self.erase = check_erase(model, self.default_erase if erase is None else erase)
        self.layer = check_layers(layer, "layer")
        self.heads = check_heads(heads, "heads")
        self.n_random, self.seed = n_random, check_seed(seed)
        self.query = check_query(query)
        self.modules = list(modules) if modules is not None else None
        self.prefix, self.dtype, self.readout = bool(prefix), dtype, bool(readout)

    def values(self, p_original: torch.Tensor, p_variant: torch.Tensor) -> torch.Tensor:
        """The metric of each bin from the original ``[B]`` and the variants' ``[B, K]`` probabilities."""
        raise NotImplementedError

    def evaluate(self, inputs: Any, attributions: Any = None, *, target: Any = None,
                 additional_forward_args: Any = None, max_examples_per_batch: int | None = None,
                 mask: torch.Tensor | None = None, tokenizer: Any = None, special_ids: Iterable[int] | None = None,
                 name: str | None = None, example_ids: Any = None) -> TopKResult:
        """Run the metric for one ranking.

        Args:
            inputs, additional_forward_args: Captum's convention or a tokenizer's output.
            attributions: a ``[B, T]`` tensor, an object with Captum's ``.attribute``, or a ranking name
                (``"attention"``, the default, ``"gradient"``, ``"attention_x_gradient"``, ``"random"``).
            target: the class the attribution explains (None: the predicted class); the metric always follows
                the originally predicted class.
            max_examples_per_batch: variants per forward for this call.
            mask, tokenizer, special_ids: the items and where the special (and mask / padding) ids come from.
            name: the label in reports; example_ids: the rows' global ids (the ``"random"`` orders).
        """
        if attributions is None:
            attributions = "attention"
        label = name if name is not None else "_"
        return self._evaluate_rankings(inputs, {label: attributions}, target, additional_forward_args,
                                       max_examples_per_batch, mask, tokenizer, special_ids, example_ids,
                                       named=name is not None)[label]

    def evaluate_many(self, inputs: Any, attributions: Mapping[str, Any], *, target: Any = None,
                      additional_forward_args: Any = None, max_examples_per_batch: int | None = None,
                      mask: torch.Tensor | None = None, tokenizer: Any = None,
                      special_ids: Iterable[int] | None = None, example_ids: Any = None) -> dict[str, TopKResult]:
        """:meth:`evaluate` for several rankings of the same inputs at once: ``{name: attributions}`` →
        ``{name: result}``, each the result of ``evaluate(inputs, attributions[name], name=name)`` (up to float
        rounding). The originals run once, and the variants of every ranking run in one pass of the engine, a
        variant shared by several rankings (the same example with the same erased set) once."""
        if not isinstance(attributions, Mapping) or not attributions:
            raise TypeError("attributions must be a non-empty mapping {name: attributions}, got "
                            f"{type(attributions).__name__}")
        bad = [k for k in attributions if not isinstance(k, str) or not k]
        if bad:
            raise TypeError(f"attributions: every name must be a non-empty str, got {bad[0]!r}")
        return self._evaluate_rankings(inputs, dict(attributions), target, additional_forward_args,
                                       max_examples_per_batch, mask, tokenizer, special_ids, example_ids,
                                       named=True)

    def _evaluate_rankings(self, inputs: Any, attributions: dict[str, Any], target: Any, additional_forward_args: Any,
                           max_examples_per_batch: int | None, mask: torch.Tensor | None, tokenizer: Any,
                           special_ids: Iterable[int] | None, example_ids: Any,
                           named: bool) -> dict[str, TopKResult]:
        batch = self.prepare(inputs, additional_forward_args, mask=mask, tokenizer=tokenizer, special_ids=special_ids)
        check_items(batch, "inputs")
        with model_guard(self.model):
            needs = self.level == "attention" or any(isinstance(a, str) and a != "random"
                                                     for a in attributions.values())
            layers, query = (resolve_attention_layers(self.model, batch, self.layer, self.heads, self.modules,
                                                      self.query) if needs else (None, "cls"))
            rankings = {key: resolve_ranking(a, self.model, batch, target, layers=layers, heads=self.heads,
                                             query=query, n_random=self.n_random, seed=self.seed,
                                             example_ids=example_ids)
                        for key, a in attributions.items()}
            replacement = erase_id(self.model, self.erase, tokenizer) if self.level == "token" else None
            runner = self.runner_for(max_examples_per_batch)
            with torch.inference_mode(), ErasedForwards(self.model, batch, runner, level=self.level,
                                                        replacement=replacement, layers=layers, heads=self.heads,
                                                        modules=self.modules, prefix=self.prefix,
                                                        dtype=self.dtype, readout=self.readout) as fw:
                p_orig = fw.original()
                orders = [s for r in rankings.values() for s in r.scores]
                pred, p0, pk, sizes = self._variants(fw, batch, orders, p_orig)
        out, start = {}, 0
        for key, ranking in rankings.items():
            R = len(ranking.scores)
            out[key] = self._result(batch, ranking, pred, p0, pk[start:start + R], sizes, key if named else None)
            start += R
        return out

    def _variants(self, fw: ErasedForwards, batch: Batch, orders: Sequence[torch.Tensor], p_orig: torch.Tensor):
        """``pred [B]``, ``p0 [B]``, ``pk [R, B, K]`` (NaN for an empty bin) and ``sizes [B, K]`` for the ``R``
        score tensors ``orders``. Variants that coincide (the same example and erased set: equal bins of a short
        input, rankings that agree) run once."""
        B, T = batch.input_ids.shape
        device = batch.device
        items = batch.items
        R, K = len(orders), len(self.fractions)
        pred = p_orig.argmax(-1)
        p0 = p_orig.gather(1, pred[:, None]).squeeze(1)
        sizes = top_fraction_sizes(batch.n_items, self.fractions, self.rounding).to(device)  # [B, K]
        rank = torch.stack([item_ranks(s, items) for s in orders])  # [R, B, T]
        # every (order, example, bin) with a non-empty bin is one variant
        k_all = sizes[None].expand(R, B, K)
        live = k_all > 0
        r_idx, b_idx, j_idx = live.nonzero(as_tuple=True)
        k = k_all[r_idx, b_idx, j_idx]
        top = rank[r_idx, b_idx] < k[:, None]  # [N, T]
        erase = items[b_idx] & (~top if self.keep else top)
        pk = torch.full((R, B, K), float("nan"), dtype=torch.float32, device=device)
        if b_idx.numel():
            distinct, inverse = torch.unique(torch.cat([b_idx[:, None], erase.long()], 1), dim=0,
                                             return_inverse=True)
            probs = fw.run(distinct[:, 0], distinct[:, 1:].bool())[inverse]
            pk[r_idx, b_idx, j_idx] = probs.gather(1, pred[b_idx][:, None]).squeeze(1).float()
        return pred, p0.float(), pk, sizes

    def _result(self, batch: Batch, ranking: Ranking, pred, p0, pk, sizes, name) -> TopKResult:
        R = pk.shape[0]
        vals = torch.stack([self.values(p0, pk[r]) for r in range(R)])  # [R, B, K]
        aopc_o = torch.nanmean(vals, dim=-1)  # [R, B]
        return TopKResult(
            method=name or ranking.name, metric=self.metric, level=self.level,
            erase=self.erase if self.level == "token" else None, fractions=self.fractions, rounding=self.rounding,
            n_items=batch.n_items, prediction=pred, probability=p0, sizes=sizes,
            variant_probability=pk.mean(0), values=vals.mean(0), aopc=aopc_o.mean(0),
            aopc_per_order=aopc_o.t().contiguous(), scores=None if ranking.random else ranking.scores[0],
            items=batch.items, order_scores=list(ranking.scores),
        )
