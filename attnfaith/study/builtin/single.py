"""``single``: :class:`attnfaith.SingleWeightErasure` (Serrano & Smith §4): the top attention weight zeroed vs a
random other one.

Records: ``single = {js_top, js_random, delta_js, flip_top, flip_random, has_random, top_item, random_item}`` (the
items as indices among the example's items; ``random_item`` None with a single item).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from attnfaith.results import fmt_number
from attnfaith.study import plots
from attnfaith.study.registry import ChunkContext, EvaluatorSpec, Figure, Metric, Table, register_evaluator
from attnfaith.study.statistics import finite_values, percent


def _run(ctx: ChunkContext) -> Iterator[tuple[tuple[str, ...], Any]]:
    from attnfaith.evaluators import SingleWeightErasure

    yield ("single",), SingleWeightErasure(ctx.model, layer=ctx.config.layer, seed=ctx.seed,
                                           max_examples_per_batch=ctx.variants_per_forward
                                           ).evaluate(ctx.inputs, "attention", example_ids=ctx.example_ids)


def _with_random(key: str, as_float: bool = False):
    """The record's ``key`` (as a float with ``as_float``: a flip as 0/1) where the example has a random item,
    else None."""
    return lambda s: (float(s[key]) if as_float else s[key]) if s.get("has_random") else None


def flip_table(run: Mapping[str, Any]) -> dict[str, int] | None:
    """Serrano & Smith's 2×2 table: how many examples flip when the top weight / a random weight is zeroed."""
    rows = [ex["single"] for ex in run["examples"] if ex.get("single") and ex["single"].get("has_random")]
    if not any(ex.get("single") for ex in run["examples"]):
        return None
    t = {"both": 0, "only_top": 0, "only_random": 0, "neither": 0, "n": len(rows)}
    for s in rows:
        key = ("both" if s["flip_random"] else "only_top") if s["flip_top"] else (
            "only_random" if s["flip_random"] else "neither")
        t[key] += 1
    return t


def render_flip_table(run: Mapping[str, Any], ss: Mapping[str, int]) -> list[str]:
    """The markdown section of :func:`flip_table`."""
    return ["## Serrano & Smith (2019): single attention weight removed, decision flips", "",
            f"Over {ss['n']} examples with at least two tokens: does zeroing the top attention weight (rows) "
            "or a random other weight (columns) flip the decision?", "",
            "| top removed flips? \\ random removed flips? | yes | no |", "|---|---|---|",
            f"| yes | {ss['both']} | {ss['only_top']} |", f"| no | {ss['only_random']} | {ss['neither']} |", ""]


def delta_js_ecdf(run: Mapping[str, Any], path: Path) -> bool:
    """The empirical CDF of Serrano & Smith's ΔJS = JS(output | top attention weight zeroed) − JS(output | random
    other weight zeroed) over the examples, on a symmetric-log x axis (linear within ±``linthresh``, the order of
    magnitude of the smallest tenth of the nonzero |ΔJS|), so that both the many tiny differences and the few
    large ones show; the share of examples with ΔJS > 0 (the top weight matters more than a random one), = 0 and
    < 0 is written in the plot."""
    vals = finite_values(ex["single"]["delta_js"] for ex in run["examples"]
                         if ex.get("single") and ex["single"]["has_random"])
    if not vals.size:
        return False
    fig, ax = plots.pyplot().subplots(figsize=(6.4, 3.8))
    x = np.sort(vals)
    y = np.arange(1, x.size + 1) / x.size
    ax.step(np.concatenate([[x[0]], x]), np.concatenate([[0.0], y]), where="post", color="#1f77b4", lw=1.8)
    nonzero = np.abs(x[x != 0])
    linthresh = 10.0 ** np.floor(np.log10(np.quantile(nonzero, 0.1))) if nonzero.size else 1e-6
    ax.set_xscale("symlog", linthresh=linthresh, linscale=0.5)
    ax.axvline(0, color="black", lw=0.8)
    ax.axhline(float((vals <= 0).mean()), color="#1f77b4", lw=0.6, ls=":")
    pos, zero, neg = float((vals > 0).mean()), float((vals == 0).mean()), float((vals < 0).mean())
    ax.text(0.02, 0.97, f"ΔJS > 0: {percent(pos)} of {vals.size} examples\nΔJS = 0: {percent(zero)}\n"
                        f"ΔJS < 0: {percent(neg)}\nmedian {fmt_number(float(np.median(vals)), 3)} nats",
            transform=ax.transAxes, va="top", ha="left", fontsize=8,
            bbox=dict(boxstyle="round", facecolor="white", edgecolor="#cccccc"))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"ΔJS = JS(top weight zeroed) − JS(random weight zeroed)  [nats; symmetric log, linear within "
                  f"±{linthresh:.0e}]")
    ax.set_ylabel("share of examples with ΔJS ≤ x")
    ax.set_title(f"Single attention weight removed (layer {run['config']['layer']}): ΔJS > 0 in {percent(pos)} of "
                 f"{vals.size} examples")
    return plots.finish(fig, path)


register_evaluator(EvaluatorSpec(
    name="single", order=50, run=_run, writes=("single",), needs_attention=True, needs_items=True,
    cost=lambda n, config, methods: 2,
    record={"js_top": "js_top", "js_random": "js_random", "delta_js": "delta_js", "flip_top": "flip_top",
            "flip_random": "flip_random", "has_random": "has_random", "top_item": "top_index",
            "random_item": "random_index"},
    metrics=(
        Metric(key="single_delta_js", header="single weight: ΔJS (top − random)", per_method=False, path=("single",),
               value=_with_random("delta_js"),
               description="Serrano & Smith §4: JS divergence of the output when the top attention weight is zeroed, "
                           "minus when a random other one is"),
        Metric(key="single_flip_top", header="single weight: flip rate, top removed", per_method=False, percent=True,
               path=("single",), value=_with_random("flip_top", True), description="Serrano & Smith §4"),
        Metric(key="single_flip_random", header="single weight: flip rate, random removed", per_method=False,
               percent=True, path=("single",), value=_with_random("flip_random", True), description="Serrano & Smith §4"),
    ),
    tables=(Table(key="ss_flip_table", compute=flip_table, render=render_flip_table),),
    figures=(Figure(key="single_delta_js", draw=delta_js_ecdf,
                    title="Single attention weight removed (Serrano & Smith §4)",
                    caption="Empirical CDF of ΔJS per example (symmetric-log x axis): output JS divergence when the top "
                            "attention weight is zeroed minus when a random other weight is; the share right of 0 "
                            "(in the box) is where the top weight matters more."),),
))
