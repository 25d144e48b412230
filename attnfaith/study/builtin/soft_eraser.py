"""``soft_comprehensiveness`` and ``soft_sufficiency``: Zhao & Aletras's (2023) soft metrics for every method
(:class:`attnfaith.SoftComprehensiveness`, :class:`attnfaith.SoftSufficiency`): each token's input embedding scaled
by ``1 − s`` or ``s`` (``s``: the method's scores min-max normalised), normalised by the fully perturbed input.

Records: ``soft_comprehensiveness[method]`` / ``soft_sufficiency[method]`` = ``{normalized, value}``.
"""

from __future__ import annotations

from typing import Any, Iterator

from attnfaith.study.builtin.eraser import orders
from attnfaith.study.registry import METHOD, ChunkContext, EvaluatorSpec, Metric, register_evaluator

_RECORD = {"normalized": "normalized", "value": "value"}


def _runner(cls_name: str, key: str):
    def run(ctx: ChunkContext) -> Iterator[tuple[tuple[str, ...], Any]]:
        import attnfaith.evaluators as evaluators

        ev = getattr(evaluators, cls_name)(ctx.model, layer=ctx.config.layer, n_random=ctx.config.n_random,
                                           seed=ctx.seed, max_examples_per_batch=ctx.variants_per_forward)
        for m in ctx.methods:
            yield (key, m), ev.evaluate(ctx.inputs, attributions=ctx.attribution(m), name=m,
                                        example_ids=ctx.example_ids)
    return run


def _skip_without_embedding(run):
    """The soft metrics need the input embedding module; a model without one gives no records."""
    def guarded(ctx: ChunkContext):
        from attnfaith.attention.model_facts import input_embedding_module

        try:
            input_embedding_module(ctx.model)
        except TypeError:
            return iter(())
        return run(ctx)
    return guarded


register_evaluator(EvaluatorSpec(
    cost=lambda n, config, methods: 1 + orders(config, methods),
    name="soft_comprehensiveness", order=14, needs_items=True, record=_RECORD, writes=("soft_comprehensiveness",),
    run=_skip_without_embedding(_runner("SoftComprehensiveness", "soft_comprehensiveness")),
    metrics=(Metric(key="soft_comprehensiveness", header="soft comp. ↑", better="higher",
                    path=("soft_comprehensiveness", METHOD), value="normalized",
                    description="soft comprehensiveness (Zhao & Aletras 2023): drop of the predicted-class "
                    "probability when every token's input embedding is scaled by 1 − its min-max normalised score, "
                    "normalised by the drop with every embedding zeroed (Carton et al. 2020), in [0, 1]"),),
))
register_evaluator(EvaluatorSpec(
    cost=lambda n, config, methods: 1 + orders(config, methods),
    name="soft_sufficiency", order=15, needs_items=True, record=_RECORD, writes=("soft_sufficiency",),
    run=_skip_without_embedding(_runner("SoftSufficiency", "soft_sufficiency")),
    metrics=(Metric(key="soft_sufficiency", header="soft suff. ↑", better="higher",
                    path=("soft_sufficiency", METHOD), value="normalized",
                    description="soft sufficiency (Zhao & Aletras 2023), normalised: 1 when scaling every token's "
                    "input embedding by its min-max normalised score keeps the predicted-class probability, 0 when "
                    "it drops as much as with every embedding zeroed (Carton et al. 2020)"),),
))
