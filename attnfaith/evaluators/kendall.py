"""Kendall τ between an attribution (attention by default) and a reference importance (Jain & Wallace 2019, §4.1).

Jain & Wallace correlate, per instance and over all real tokens (never ``<SOS>``/``<EOS>``/padding), the attention
weights with gradient importance and with leave-one-out importance, using ``scipy.stats.kendalltau`` (τ-b, tie
corrected; asymptotic p-value). Table 2 reports, per *predicted* class (``round(ŷ)``), the mean ± std of τ over
instances and "Sig. Frac." = the share of instances with p ≤ 0.05 (``common_code/plotting.py::
plot_SP_histogram_by_class``, ``np.std`` i.e. population std, ddof = 0).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable

import torch
from torch import nn

from attnfaith._inputs import call_model, probs_of, resolve_target
from attnfaith._state import model_guard
from attnfaith.attention import AttentionTap
from attnfaith.attr.attention import AttentionAttribution
from attnfaith.attr.gradient import GradientImportance
from attnfaith.attr.ig import EmbeddingIntegratedGradients
from attnfaith.attr.loo import LeaveOneOut
from attnfaith.evaluators._base import Evaluator, attribution_scores
from attnfaith.evaluators.rankings import RANKINGS, resolve_ranking
from attnfaith.evaluators.result import Result
from attnfaith.evaluators.selection import auto_query
from attnfaith.metrics import kendall_tau
from attnfaith.results import fmt_number
from attnfaith.seeding import check_seed

__all__ = ["KendallTau", "KendallTauResult", "REFERENCES"]

#: reference names :class:`KendallTau` accepts
REFERENCES = ("loo", "gradient", "ig")


def _stat(x: torch.Tensor) -> float:
    return float(x) if x.numel() else float("nan")


@dataclass
class KendallTauResult(Result):
    """Per-example Kendall τ-b between ``attributions`` and ``reference`` over the items.

    Attributes:
        tau, pvalue: float64 ``[B]`` (NaN where fewer than 2 items or a constant ranking, as scipy).
        attributions, reference: the two score tensors ``[B, T]``.
        predicted: LongTensor ``[B]``, the model's predicted class (JW split Table 2 by it).
        items: BoolTensor ``[B, T]``, the positions ranked.
        reference_name: ``"loo"``, ``"gradient"``, ``"ig"`` or the class name of the reference object.
        alpha: the significance level of :meth:`summary`'s ``sig_frac``.
    """

    layout: ClassVar[dict[str, str]] = {"tau": "row", "pvalue": "row", "attributions": "token",
                                        "reference": "token", "predicted": "row", "items": "token"}

    tau: torch.Tensor
    pvalue: torch.Tensor
    attributions: torch.Tensor
    reference: torch.Tensor
    predicted: torch.Tensor
    items: torch.Tensor
    reference_name: str = "reference"
    alpha: float = field(default=0.05)

    def summary(self, alpha: float | None = None) -> dict[Any, dict[str, float]]:
        """Jain & Wallace's Table 2 row for each predicted class, plus ``"all"``:
        ``{class: {"mean": τ̄, "std": population std of τ, "sig_frac": share with p ≤ alpha (two-sided, Jain &
        Wallace's "Sig. Frac."), "sig_pos_frac" / "sig_neg_frac": share with p ≤ alpha and τ > 0 / τ < 0,
        "n": examples}}``. Examples whose τ is undefined (NaN) are left out of every entry."""
        alpha = self.alpha if alpha is None else float(alpha)
        tau = self.tau.detach().double().cpu()
        pv = self.pvalue.detach().double().cpu()
        pred = self.predicted.detach().cpu()
        valid = torch.isfinite(tau)
        out: dict[Any, dict[str, float]] = {}
        groups = [(int(c), pred == c) for c in torch.unique(pred[valid]).tolist()] + [("all", torch.ones_like(valid))]
        for key, sel in groups:
            sel = sel & valid
            t, p = tau[sel], pv[sel]
            n = int(sel.sum())
            out[key] = {
                "mean": _stat(t.mean()) if n else float("nan"),
                "std": _stat(t.std(unbiased=False)) if n else float("nan"),
                "sig_frac": _stat((p <= alpha).double().mean()) if n else float("nan"),
                "sig_pos_frac": _stat(((p <= alpha) & (t > 0)).double().mean()) if n else float("nan"),
                "sig_neg_frac": _stat(((p <= alpha) & (t < 0)).double().mean()) if n else float("nan"),
                "n": n,
            }
        return out

    def to_markdown(self) -> str:
        rows = [
            f"Kendall τ: attributions vs {self.reference_name} (Jain & Wallace 2019, Table 2)",
            "",
            "| predicted class | τ mean ± std | sig. frac. (p ≤ %g) | n |" % self.alpha,
            "|---|---|---|---|",
        ]
        for key, s in self.summary().items():
            rows.append(f"| {key} | {fmt_number(s['mean'])} ± {fmt_number(s['std'])} | {fmt_number(s['sig_frac'], 2)} | {s['n']} |")
        return "\n".join(rows)


def _check_reference(reference: Any) -> Any:
    if isinstance(reference, str):
        if reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES} or an object with Captum's .attribute, got "
                             f"{reference!r}")
        return reference
    if isinstance(reference, torch.Tensor) or hasattr(reference, "attribute_batch") or hasattr(reference, "attribute"):
        return reference
    raise TypeError(
        f"reference must be one of {REFERENCES}, an object with Captum's .attribute or a [B, T] tensor, got "
        f"{type(reference).__name__}"
    )


class KendallTau(Evaluator):
    """Per-example Kendall τ-b between an attribution and a reference token importance (Jain & Wallace 2019).

    ``evaluate`` computes ``a = attributions`` (default :class:`attnfaith.attr.AttentionAttribution` ``(model)``:
    the last layer's attention, mean over heads, of the query row the classifier reads: the first real token, [CLS],
    for bidirectional layers, the last real token for causal and cross-attention layers; the names of
    :data:`attnfaith.evaluators.rankings.RANKINGS` read the same layer and row, ``"random"`` is one seeded order) and
    ``r = reference`` scores, then
    ``kendall_tau(a, r, mask=batch.items)``: τ-b with scipy's asymptotic p-value, over the items only (special tokens
    and padding excluded, as JW's ``[1:L−1]`` slice; or the caller's ``mask``).

    Args:
        model: the model.
        reference: ``"loo"`` (:class:`attnfaith.attr.LeaveOneOut`, deletion, TVD of the output: JW's
            ``remove_and_run``), ``"gradient"`` (:class:`attnfaith.attr.GradientImportance`, ``|∇ŷ·e|``, full
            gradient; pass ``GradientImportance(model, detach_attention=True)`` for JW's exact detached variant),
            ``"ig"`` (:func:`attnfaith.attr.integrated_gradients`), any object with Captum's ``.attribute`` (an
            attnfaith attribution or a Captum ``Attribution``, called Captum's way), or a ``[B, T]`` tensor.
        max_examples_per_batch, memory_budget: see :class:`attnfaith.evaluators.Evaluator` (they also drive the
            leave-one-out reference's batching).

    ``target`` (None: the predicted class) is passed to both the attribution and the reference. Both are signed or
    not as they come: JW's references are non-negative (|gradient| and TVD), attention too.
    """

    def __init__(
        self,
        model: nn.Module,
        reference: Any = "loo",
        *,
        max_examples_per_batch: int | None = None,
        memory_budget: int | None = None,
    ) -> None:
        super().__init__(model, max_examples_per_batch=max_examples_per_batch, memory_budget=memory_budget)
        self.reference = _check_reference(reference)

    def _reference(self, max_examples_per_batch: int | None) -> Any:
        ref = self.reference
        if not isinstance(ref, str):
            return ref
        runner = self.runner_for(max_examples_per_batch)
        if ref == "loo":
            return LeaveOneOut(self.model, "delete", max_examples_per_batch=runner.max_examples_per_batch,
                               memory_budget=runner.memory_budget)
        if ref == "gradient":
            return GradientImportance(self.model)
        return EmbeddingIntegratedGradients(self.model)

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
        seed: int = 0,
        example_ids: Any = None,
    ) -> KendallTauResult:
        """Kendall τ per example; see the class docstring and :meth:`Evaluator.evaluate`. ``mask``: explicit
        BoolTensor ``[B, T]`` of positions to rank; ``seed``: of the ``"random"`` ranking, one order per example
        from the generator seeded ``example_seed(seed, example_ids[b])`` (:mod:`attnfaith.seeding`;
        ``example_ids``: the rows' global example ids, LongTensor or sequence ``[B]``, default ``0..B-1``)."""
        check_seed(seed)
        batch = self.prepare(inputs, additional_forward_args, mask=mask, tokenizer=tokenizer, special_ids=special_ids)
        if isinstance(attributions, str) and attributions not in RANKINGS:
            raise ValueError(f"attributions must be None, one of {RANKINGS}, a [B, T] tensor or an attribution "
                             f"object with .attribute; got {attributions!r}")
        by_name = attributions is None or isinstance(attributions, str)
        ref_obj = self._reference(max_examples_per_batch)
        ref = None
        logits = None
        if isinstance(attributions, torch.Tensor) and isinstance(ref_obj, LeaveOneOut):
            # the leave-one-out pass runs the originals too: their distributions stand in for this call's forward
            ref = attribution_scores(ref_obj, self.model, batch, None, name="reference")
            if ref_obj.last_probs is not None:
                logits = ref_obj.last_probs.float().clamp_min(torch.finfo(torch.float32).tiny).log()
        layers = []
        if logits is None:
            with contextlib.ExitStack() as stack:
                stack.enter_context(model_guard(self.model))
                stack.enter_context(torch.no_grad())
                tap = stack.enter_context(AttentionTap(self.model, capture=None)) if by_name else None
                logits = call_model(self.model, batch)
                layers = list(tap.layers) if tap is not None else []
        predicted = probs_of(logits).argmax(dim=-1)
        t = resolve_target(target, logits)
        if by_name:
            # the row the classifier reads: [CLS] for encoders, the last token for causal / cross-attention layers
            query = auto_query(layers, [len(layers) - 1])
            ranking = resolve_ranking(attributions or "attention", self.model, batch, t,
                                      layers=[len(layers) - 1], query=query, n_random=1, seed=seed,
                                      name="attributions", example_ids=example_ids)
            attr = ranking.scores[0]
        else:
            attr = attribution_scores(attributions, self.model, batch, t, name="attributions")
        if ref is None:
            ref = attribution_scores(ref_obj, self.model, batch, t, name="reference")
        tau, pvalue = kendall_tau(attr, ref, mask=batch.items)
        if isinstance(self.reference, str):
            name = self.reference
        elif isinstance(self.reference, torch.Tensor):
            name = "scores"
        else:
            name = type(self.reference).__name__
        return KendallTauResult(tau=tau, pvalue=pvalue, attributions=attr, reference=ref, predicted=predicted,
                                items=batch.items.clone(), reference_name=name)
