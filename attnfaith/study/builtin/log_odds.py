"""``log_odds``: the change in log-probability of the predicted class when each method's top 20 % tokens are
replaced by the mask token (else the padding id) — Shrikumar et al. (2017) as the DIG benchmark uses it
(:class:`attnfaith.LogOdds`). Records: ``log_odds[method] = {log_odds}``."""

from __future__ import annotations

from typing import Any, Iterator

from attnfaith.study.builtin.eraser import orders
from attnfaith.study.registry import METHOD, ChunkContext, EvaluatorSpec, Metric, register_evaluator


def _run(ctx: ChunkContext) -> Iterator[tuple[tuple[str, ...], Any]]:
    from attnfaith.evaluators import LogOdds

    ev = LogOdds(ctx.model, layer=ctx.config.layer, n_random=ctx.config.n_random, seed=ctx.seed,
                 max_examples_per_batch=ctx.variants_per_forward)
    results = ev.evaluate_many(ctx.inputs, {m: ctx.attribution(m) for m in ctx.methods}, example_ids=ctx.example_ids)
    for m in ctx.methods:
        yield ("log_odds", m), results[m]


register_evaluator(EvaluatorSpec(
    cost=lambda n, config, methods: 1 + orders(config, methods),
    name="log_odds", order=16, run=_run, writes=("log_odds",), needs_items=True, record={"log_odds": "aopc"},
    metrics=(Metric(key="log_odds", header="log-odds ↓", better="lower", path=("log_odds", METHOD),
                    value="log_odds",
                    description="log p(predicted class) after the method's top 20 % tokens are replaced by the mask "
                    "token (padding when the model names none) minus before (Shrikumar et al. 2017; DIG)"),),
))
