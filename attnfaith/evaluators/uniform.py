"""The uniform-attention baseline at inference: Wiegreffe & Pinter (2019), "Attention is not not Explanation", §3.1.

Wiegreffe & Pinter train a model with its attention frozen to the uniform distribution over the real tokens
(``--attention frozen``, ``modelUtils.generate_frozen_uniform_attn``: ``α_t = 1/(L−2)`` on the words, 0 on
``<SOS>``/``<EOS>``/padding) and compare its F1 with the trained attention. :class:`UniformAttention` applies the same
replacement to a trained model at inference, without retraining: the attention of the chosen layers (default: all)
becomes, on every head and query row, the uniform distribution over the keys that query may see (the
``"uniform"`` intervention of :mod:`attnfaith.attention.interventions`: real, non-padding keys; in a causal layer
only those at or before the query). Keys the model itself masks (for the reference models of
:mod:`attnfaith.reference.models`: the special tokens, as in WP) stay masked. For a HuggingFace model the special tokens
([CLS], [SEP]...) are real keys the query may see, so they get their share, unlike in WP's code.

Per example: the TVD ``½ Σ|p − q|`` (Jain & Wallace's output measure) and the JS divergence in nats between the
output distributions (softmax, or ``[1−σ, σ]`` for one logit) with the original and with uniform attention, whether
the decision (argmax) changed and, when ``labels`` are given, the accuracy before and after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Sequence

import torch
from torch import nn

from attnfaith._inputs import call_model, probs_of
from attnfaith._state import model_guard
from attnfaith.attention import AttentionTap
from attnfaith.evaluators._base import Evaluator
from attnfaith.evaluators.result import Result
from attnfaith.evaluators.selection import check_heads, check_layers, resolve_attention_layers
from attnfaith.metrics import jsd, tvd
from attnfaith.results import markdown_table
from attnfaith.seeding import check_example_ids

__all__ = ["UniformAttention", "UniformAttentionResult"]


@dataclass
class UniformAttentionResult(Result):
    """Uniform attention at inference (see :mod:`attnfaith.evaluators.uniform`).

    Attributes (``[B]`` per example unless noted):
        tvd, jsd: distance of the output distribution with uniform attention from the original (JSD in nats); NaN
            for a row without items (nothing to explain).
        flipped: the predicted class changed (False for a row without items; the flip rate leaves such rows out).
        prediction, prediction_uniform: predicted class before / after.
        probs, probs_uniform: ``[B, C]`` output distributions before / after.
        labels: the gold labels, if given.
        layers: the layer indices made uniform.
    """

    layout: ClassVar[dict[str, str]] = {
        "tvd": "row", "jsd": "row", "flipped": "row", "prediction": "row", "prediction_uniform": "row",
        "probs": "row", "probs_uniform": "row", "labels": "row",
    }

    tvd: torch.Tensor
    jsd: torch.Tensor
    flipped: torch.Tensor
    prediction: torch.Tensor
    prediction_uniform: torch.Tensor
    probs: torch.Tensor
    probs_uniform: torch.Tensor
    labels: torch.Tensor | None
    layers: list[int]

    @property
    def accuracy(self) -> float | None:
        """Accuracy with the model's own attention (None without labels)."""
        if self.labels is None:
            return None
        return float((self.prediction == self.labels).double().mean())

    @property
    def accuracy_uniform(self) -> float | None:
        """Accuracy with uniform attention (None without labels)."""
        if self.labels is None:
            return None
        return float((self.prediction_uniform == self.labels).double().mean())

    def summary(self) -> dict[str, Any]:
        """``n_examples``, ``layers``, the mean TVD and JSD and the flip rate over the examples with items, and the
        accuracy before and after (None without labels)."""
        return {
            "n_examples": len(self),
            "layers": list(self.layers),
            "mean_tvd": float(self.tvd.detach().double().nanmean()),
            "mean_jsd": float(self.jsd.detach().double().nanmean()),
            "flip_rate": float(self.flipped[~self.tvd.isnan()].detach().double().mean()),
            "accuracy": self.accuracy,
            "accuracy_uniform": self.accuracy_uniform,
        }

    def to_markdown(self) -> str:
        s = self.summary()
        return "**UniformAttention**\n\n" + markdown_table(
            ["layers", "mean TVD", "mean JSD", "flip rate", "accuracy", "accuracy (uniform)", "examples"],
            [[str(s["layers"]), s["mean_tvd"], s["mean_jsd"], s["flip_rate"], s["accuracy"], s["accuracy_uniform"],
              s["n_examples"]]],
        )


class UniformAttention(Evaluator):
    """Replace the attention of the chosen layers with the uniform distribution over the visible keys (Wiegreffe &
    Pinter 2019, at inference).

    Args:
        model: a HuggingFace model or a custom model (see :class:`attnfaith.AttentionTap`).
        layers: ``"all"`` (default: every attention layer, decoder self- and cross-attention included), an int or a
            list of ints (negative count from the end).
        heads: None (every head), an int or a list of heads.
        modules: module names for :class:`attnfaith.AttentionTap` (custom models).
        max_examples_per_batch, memory_budget: see :class:`attnfaith.evaluators._base.Evaluator`.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Any = "all",
        heads: Any = None,
        *,
        modules: Sequence[str] | None = None,
        max_examples_per_batch: int | None = None,
        memory_budget: int | None = None,
    ) -> None:
        super().__init__(model, max_examples_per_batch=max_examples_per_batch, memory_budget=memory_budget)
        self.layers = check_layers(layers, "layers")
        self.heads = check_heads(heads, "heads")
        self.modules = list(modules) if modules is not None else None

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
        labels: Any = None,
        example_ids: Any = None,
    ) -> UniformAttentionResult:
        """Run the model with its own and with uniform attention (see :meth:`Evaluator.evaluate`). ``labels``:
        optional ``[B]`` gold classes (accuracy before and after). ``target`` is not used (the distances cover every
        class) and ``attributions`` must be None (the attention itself is replaced). ``example_ids`` is accepted
        (and checked) as by every evaluator; nothing here is random."""
        if attributions is not None:
            raise ValueError("attributions: UniformAttention replaces the model's own attention and takes no "
                             "attributions (leave it None; gold labels go in labels=)")
        batch = self.prepare(inputs, additional_forward_args, mask=mask, tokenizer=tokenizer, special_ids=special_ids)
        check_example_ids(example_ids, batch.size)
        B, T = batch.input_ids.shape
        device = batch.device
        if labels is not None:
            labels = torch.as_tensor(labels).to(device)
            if labels.is_floating_point() or labels.dtype == torch.bool:
                raise TypeError("labels must hold integer class indices")
            labels = labels.long().reshape(-1)
            if labels.shape[0] != B:
                raise ValueError(f"labels has {labels.shape[0]} entries but the batch has {B} examples")
        model = self.model
        with model_guard(model):
            layers, _ = resolve_attention_layers(model, batch, self.layers, self.heads, self.modules, name="layers",
                                                 all_means="every")
            runner = self.runner_for(max_examples_per_batch)
            with torch.no_grad(), AttentionTap(model, capture=None, modules=self.modules) as tap:
                def run(uniform: bool):
                    def fn(start: int, stop: int) -> torch.Tensor:
                        sub = batch.index_rows(torch.arange(start, stop, device=device))
                        if not uniform:
                            return probs_of(call_model(model, sub))
                        iv = tap.intervene("uniform", layers=tuple(layers), heads=self.heads)
                        try:
                            return probs_of(call_model(model, sub))
                        finally:
                            tap.remove(iv)

                    return runner.run(B, fn, seq_len=T, device=device)

                p = run(False)
                q = run(True)
        if labels is not None and ((labels < 0) | (labels >= p.shape[-1])).any():
            raise ValueError(f"labels holds a class outside 0..{p.shape[-1] - 1}")
        pred, pred_u = p.argmax(-1), q.argmax(-1)
        # a row without items (all padding or special tokens) has nothing to explain: NaN, not flipped
        no_items = (batch.n_items == 0).to(p.device)
        return UniformAttentionResult(
            tvd=tvd(q, p).masked_fill(no_items, float("nan")),
            jsd=jsd(q, p).masked_fill(no_items, float("nan")),
            flipped=(pred != pred_u) & ~no_items,
            prediction=pred,
            prediction_uniform=pred_u,
            probs=p,
            probs_uniform=q,
            labels=labels,
            layers=layers,
        )
