"""``normalized_aopc``: Edin et al.'s (2024) normalised AOPC for every method (:class:`attnfaith.NormalizedAOPC`,
the mask token (else padding) in place of removed tokens, exact bounds up to 10 items, beam search of width 5 above).
The bounds do not depend on the method: they are computed once per chunk, widened to contain every method's orders
(a beam can miss the best order), and every method is normalised by them.

Records: ``normalized_aopc[method] = {naopc_comp, naopc_suff, aopc_comp, aopc_suff, lower, upper, exact}``.
Not run by default (beam search costs about ``beam · n²`` forwards per example); ``--evaluators normalized_aopc``.
"""

from __future__ import annotations

from typing import Any, Iterator

from attnfaith.study.builtin.eraser import orders
from attnfaith.study.registry import METHOD, ChunkContext, EvaluatorSpec, Metric, register_evaluator


def _run(ctx: ChunkContext) -> Iterator[tuple[tuple[str, ...], Any]]:
    from attnfaith.evaluators import NormalizedAOPC

    ev = NormalizedAOPC(ctx.model, layer=ctx.config.layer, n_random=ctx.config.n_random, seed=ctx.seed,
                        max_examples_per_batch=ctx.variants_per_forward)
    bounds = ev.bounds(ctx.inputs)
    results = {m: ev.evaluate(ctx.inputs, attributions=ctx.attribution(m), name=m, example_ids=ctx.example_ids,
                              bounds=bounds) for m in ctx.methods}
    shared = bounds.widened(list(results.values()))  # every method normalised by the same bounds
    for m, res in results.items():
        yield ("normalized_aopc", m), res.renormalized(shared)


register_evaluator(EvaluatorSpec(
    # the bounds: every subset up to 10 items (2^n), else a beam of 5 extended by every item at each step (5·n²)
    cost=lambda n, config, methods: (2 ** n if n <= 10 else 5 * n * n) + 2 * n * orders(config, methods),
    name="normalized_aopc", order=17, run=_run, writes=("normalized_aopc",), needs_items=True, default=False,
    record={k: k for k in ("naopc_comp", "naopc_suff", "aopc_comp", "aopc_suff", "lower", "upper", "exact")},
    metrics=(
        Metric(key="naopc_comp", header="NAOPC comp. ↑", better="higher", path=("normalized_aopc", METHOD),
               value="naopc_comp",
               description="normalised AOPC (Edin et al. 2024): the AOPC of masking the method's tokens most "
               "important first, over every step, rescaled by the lowest (0) and highest (1) AOPC of any order "
               "(exact up to 10 tokens, beam search of width 5 above)"),
        Metric(key="naopc_suff", header="NAOPC suff. ↓", better="lower", path=("normalized_aopc", METHOD),
               value="naopc_suff",
               description="normalised AOPC of masking the method's tokens least important first (sufficiency "
               "direction): lower is more faithful"),
    ),
))
