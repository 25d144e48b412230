"""``uniform``: :class:`attnfaith.UniformAttention`, Wiegreffe & Pinter's uniform-attention baseline at inference
(every attention layer uniform, the evaluator's default ``layers="all"``), per example.

Records: ``uniform = {tvd, jsd, flipped, prediction_uniform}``; the summary adds the accuracy with uniform attention.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from attnfaith.study.registry import ChunkContext, EvaluatorSpec, Metric, Statistic, register_evaluator
from attnfaith.study.statistics import bootstrap_mean, cell


def _run(ctx: ChunkContext) -> Iterator[tuple[tuple[str, ...], Any]]:
    from attnfaith.evaluators import UniformAttention

    res = UniformAttention(ctx.model, max_examples_per_batch=ctx.variants_per_forward).evaluate(
        ctx.inputs, labels=None if ctx.labels is None else list(ctx.labels))
    yield ("uniform",), res


def accuracy_uniform(run: Mapping[str, Any], seed: int) -> dict[str, Any] | None:
    """Bootstrap accuracy with uniform attention (None without labels or without a uniform record everywhere)."""
    examples = run["examples"]
    if not examples or any(ex.get("label") is None for ex in examples) or not all(ex.get("uniform") for ex in examples):
        return None
    return bootstrap_mean([float(ex["uniform"]["prediction_uniform"] == ex["label"]) for ex in examples], seed=seed)


def _accuracy_sentence(summary: Mapping[str, Any]) -> str | None:
    if not (summary.get("accuracy_uniform_attention") and summary.get("accuracy")):
        return None
    return (f"Accuracy with the model's attention {cell(summary['accuracy'], pct=True)}, with uniform "
            f"attention {cell(summary['accuracy_uniform_attention'], pct=True)}.")


register_evaluator(EvaluatorSpec(
    name="uniform", order=60, run=_run, writes=("uniform",), needs_attention=True,
    cost=lambda n, config, methods: 1,
    record={"tvd": "tvd", "jsd": "jsd", "flipped": "flipped", "prediction_uniform": "prediction_uniform"},
    metrics=(
        Metric(key="uniform_tvd", header="uniform attention: ΔTVD", per_method=False, path=("uniform",), value="tvd",
               description="Wiegreffe & Pinter §3.1 at inference: output change when every attention layer is made "
                           "uniform"),
        Metric(key="uniform_flip", header="uniform attention: flip rate", per_method=False, percent=True,
               path=("uniform",), value=lambda u: float(u["flipped"]), description="Wiegreffe & Pinter §3.1"),
    ),
    statistics=(Statistic(key="accuracy_uniform_attention", compute=accuracy_uniform, sentence=_accuracy_sentence),),
))
