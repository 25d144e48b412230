"""``adversarial``: :class:`attnfaith.AdversarialAttention` (Jain & Wallace §4.3), the most different attention
that keeps the output within TVD 0.05. Expensive (``config.adversarial_steps`` Adam steps per chunk): off by
default.

Records: ``adversarial = {jsd, tvd, max_attention}``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator, Mapping

from attnfaith.study import plots
from attnfaith.study.registry import ChunkContext, EvaluatorSpec, Figure, Metric, register_evaluator


def _run(ctx: ChunkContext) -> Iterator[tuple[tuple[str, ...], Any]]:
    from attnfaith.evaluators import AdversarialAttention

    config = ctx.config
    yield ("adversarial",), AdversarialAttention(ctx.model, layer=config.layer, steps=config.adversarial_steps,
                                                 seed=ctx.seed, max_examples_per_batch=ctx.variants_per_forward
                                                 ).evaluate(ctx.inputs, example_ids=ctx.example_ids)


def adversarial_violin(run: Mapping[str, Any], path: Path) -> bool:
    """Jain & Wallace's adversarial-attention violin: max JSD found (output TVD ≤ 0.05) against max attention."""
    made = plots.violin_by_max_attention(run, "adversarial", "jsd", "max_attention",
                                          "JSD(adversarial, original attention) [nats]")
    if made is None:
        return False
    fig, ax, ok = made
    ax.axhline(math.log(2), color="black", lw=0.6, ls=":")
    ax.set_ylim(0, 0.72)
    ax.set_title("Adversarial attention with output TVD ≤ 0.05 (dotted: ln 2, the maximum)", fontsize=10)
    return plots.finish(fig, path, ok)


register_evaluator(EvaluatorSpec(
    name="adversarial", order=70, run=_run, writes=("adversarial",), needs_attention=True, default=False,
    cost=lambda n, config, methods: 3 * 5 * config.adversarial_steps,  # K = 5 candidates, forward + backward
    record={"jsd": "jsd", "tvd": "tvd", "max_attention": "max_attention"},
    metrics=(Metric(key="adversarial_jsd", header="adversarial attention: max JSD", per_method=False,
                    path=("adversarial",), value="jsd",
                    description="Jain & Wallace §4.3: most different attention (JSD, nats, ≤ ln 2) keeping the output "
                                "within TVD 0.05"),),
    figures=(Figure(key="adversarial_violin", draw=adversarial_violin,
                    title="Adversarial attention (Jain & Wallace Fig. 6)",
                    caption="Largest JS divergence from the original attention reached while keeping the output within "
                            "TVD 0.05."),),
))
