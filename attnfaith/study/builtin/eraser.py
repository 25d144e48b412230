"""``comprehensiveness`` and ``sufficiency``: ERASER's metrics (DeYoung et al. 2020) for every method, token level,
deletion, at the bins 1/5/10/20/50 % (:class:`attnfaith.Comprehensiveness`, :class:`attnfaith.Sufficiency`).

Records: ``comprehensiveness[method]`` / ``sufficiency[method]`` = ``{aopc, values, sizes}`` (the AOPC, the value of
each bin, the number of top items of each bin). The random method averages Serrano & Smith's ``n_random`` seeded
orders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from attnfaith.metrics.eraser import ERASER_FRACTIONS
from attnfaith.study import plots
from attnfaith.study.registry import (
    METHOD, ChunkContext, EvaluatorSpec, Figure, Metric, Verdict, method_label, method_spec, register_evaluator,
)

def orders(config: Any, methods: Any) -> int:
    """The removal orders a chunk's example is erased in: one per method, ``n_random`` for the random one (the
    progress estimate of the ERASER evaluators, :attr:`attnfaith.study.registry.EvaluatorSpec.cost`)."""
    return sum(config.n_random if method_spec(m).ranking == "random" else 1 for m in methods)


#: the method every other is compared with in the verdicts
BASELINE = "random"
_RECORD = {"aopc": "aopc", "values": "values", "sizes": "sizes"}


def _runner(cls_name: str, key: str):
    def run(ctx: ChunkContext) -> Iterator[tuple[tuple[str, ...], Any]]:
        import attnfaith.evaluators as evaluators

        ev = getattr(evaluators, cls_name)(ctx.model, level="token", erase="delete", layer=ctx.config.layer,
                                           n_random=ctx.config.n_random, seed=ctx.seed,
                                           max_examples_per_batch=ctx.variants_per_forward)
        # every method at once: the originals run once, and variants the methods share run once
        results = ev.evaluate_many(ctx.inputs, {m: ctx.attribution(m) for m in ctx.methods},
                                   example_ids=ctx.example_ids)
        for m in ctx.methods:
            yield (key, m), results[m]
    return run


COMPREHENSIVENESS = Metric(
    key="comprehensiveness", header="comprehensiveness ↑", better="higher", path=("comprehensiveness", METHOD),
    value="aopc", description="ERASER comprehensiveness (DeYoung et al. 2020): drop of the predicted-class "
    "probability when the method's top 1/5/10/20/50 % tokens are deleted, averaged over the five bins (AOPC)")
SUFFICIENCY = Metric(
    key="sufficiency", header="sufficiency ↓", better="lower", path=("sufficiency", METHOD), value="aopc",
    description="ERASER sufficiency: drop of the predicted-class probability when only the method's top "
    "1/5/10/20/50 % tokens are kept (special tokens too), averaged over the five bins (AOPC)")


def _mean(v: Verdict, method: str, key: str) -> float | None:
    cell = v.table.get(method, {}).get(key)
    return None if not cell else cell.get("mean")


def _verdict(v: Verdict) -> list[str]:
    comp, suff = _mean(v, v.method, "comprehensiveness"), _mean(v, v.method, "sufficiency")
    if comp is None and suff is None:
        return []
    parts = []
    if comp is not None:
        parts.append(f"deleting its top tokens lowers P(predicted class) by {comp:.2f} on average over ERASER's "
                     "bins (comprehensiveness)")
    if suff is not None:
        parts.append(f"keeping only them lowers it by {suff:.2f} (sufficiency)")
    text = ", ".join(parts)
    rc, rs = _mean(v, BASELINE, "comprehensiveness"), _mean(v, BASELINE, "sufficiency")
    if v.method != BASELINE and (rc is not None or rs is not None):
        text += " — random: " + ", ".join(f"{x:.2f}" for x in (rc, rs) if x is not None)
    return [text]


def eraser_bins(run: Mapping[str, Any], path: Path) -> bool:
    """Mean comprehensiveness (left) and sufficiency (right) of each bin, one line per method."""
    keys = [k for k in ("comprehensiveness", "sufficiency") if any(ex.get(k) for ex in run["examples"])]
    if not keys:
        return False
    fig, axes = plots.pyplot().subplots(1, len(keys), figsize=(5.6 * len(keys), 4.0), squeeze=False)
    x = [100 * f for f in ERASER_FRACTIONS]
    drawn = False
    for ax, key in zip(axes[0], keys):
        for m in plots.methods_of(run):
            rows = [(ex.get(key) or {}).get(m) for ex in run["examples"]]
            vals = [[np.nan if v is None else v for v in r["values"]] for r in rows if r and r.get("values")]
            if not vals:
                continue
            ax.plot(x, np.nanmean(np.asarray(vals, dtype=float), 0), marker="o", color=plots.color(m),
                    label=method_label(m))
            drawn = True
        ax.set_xscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels([f"{v:g}%" for v in x])
        ax.set_xlabel("top tokens " + ("deleted" if key == "comprehensiveness" else "kept"))
        ax.set_ylabel("mean drop of P(predicted class)")
        ax.set_title(key + (" (higher: more faithful)" if key == "comprehensiveness" else " (lower: more faithful)"))
        ax.axhline(0, color="black", lw=0.6, ls=":")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return plots.finish(fig, path, drawn)


register_evaluator(EvaluatorSpec(
    name="comprehensiveness", order=12, run=_runner("Comprehensiveness", "comprehensiveness"),
    cost=lambda n, config, methods: 1 + len(ERASER_FRACTIONS) * orders(config, methods),
    writes=("comprehensiveness",), needs_items=True, record=_RECORD, metrics=(COMPREHENSIVENESS,), verdict=_verdict,
    figures=(Figure(key="eraser_bins", draw=eraser_bins, title="ERASER comprehensiveness and sufficiency per bin",
                    caption="Mean drop of the predicted-class probability when each method's top 1, 5, 10, 20 and "
                            "50 % tokens are deleted (comprehensiveness, higher is more faithful) or are all that is "
                            "kept (sufficiency, lower is more faithful)."),),
))
register_evaluator(EvaluatorSpec(
    name="sufficiency", order=13, run=_runner("Sufficiency", "sufficiency"), writes=("sufficiency",),
    cost=lambda n, config, methods: 1 + len(ERASER_FRACTIONS) * orders(config, methods),
    needs_items=True, record=_RECORD, metrics=(SUFFICIENCY,),
))
