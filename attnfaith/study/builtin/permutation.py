"""``permutation``: :class:`attnfaith.PermutationTVD` of the tested layer's attention (Jain & Wallace §4.2).

Records: ``permutation = {median_tvd, max_tvd, mean_tvd, max_attention}`` (median, max and mean over the
permutations of the output TVD; the example's largest attention weight on an item).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from attnfaith.results import fmt_number, json_number, markdown_table
from attnfaith.study import plots
from attnfaith.study.statistics import few
from attnfaith.study.registry import (
    ChunkContext, EvaluatorSpec, Figure, From, Metric, Table, Verdict, register_evaluator,
)

#: the method whose attention the test permutes (its verdict reports the test)
ATTENTION_METHOD = "attention"


def _run(ctx: ChunkContext) -> Iterator[tuple[tuple[str, ...], Any]]:
    from attnfaith.evaluators import PermutationTVD

    config = ctx.config
    yield ("permutation",), PermutationTVD(ctx.model, layer=config.layer, n_permutations=config.permutations,
                                           seed=ctx.seed, max_examples_per_batch=ctx.variants_per_forward
                                           ).evaluate(ctx.inputs, example_ids=ctx.example_ids)


def _mean(values: list[float | None]) -> float | None:
    """The float64 mean of a record's values (None: NaN), as strict JSON."""
    return json_number(torch.tensor([float("nan") if v is None else v for v in values], dtype=torch.float64).mean())


def _verdict(v: Verdict) -> list[str]:
    pm = v.attention.get("permutation_median_tvd")
    if v.method != ATTENTION_METHOD or not pm or pm["mean"] is None:
        return []
    what = ("the order of the weights matters" if pm["mean"] >= 0.05
            else "small: the prediction barely depends on which token gets which weight")
    only = f"; over only {pm['n']} examples" if few(pm["n"]) else ""
    return [f"permuting the attention moves the output by a median TVD of {fmt_number(pm['mean'], 3, 'n/a')} on "
            f"average ({what}{only})"]


def permutation_violin(run: Mapping[str, Any], path: Path) -> bool:
    """Jain & Wallace's Figure 3 as a plot of this run: per example, the median over permutations of the output
    TVD, against the example's maximum attention weight (binned), split by predicted class."""
    made = plots.violin_by_max_attention(run, "permutation", "median_tvd", "max_attention",
                                          "median ΔTVD of the output over permutations")
    if made is None:
        return False
    fig, ax, ok = made
    top = ax.get_ylim()[1]
    ax.set_ylim(-0.015 * top, top * 1.05)
    ax.set_title(f"Permuted attention (layer {run['config']['layer']}, {run['config']['permutations']} permutations "
                 "per example)", fontsize=10)
    return plots.finish(fig, path, ok)


def permutation_bins(run: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]] | None:
    """Jain & Wallace Fig. 3's numbers: the per-example median ΔTVD binned by the example's largest attention
    weight (:func:`attnfaith.metrics.bin_quartiles`), over all examples (``"all"``) and per predicted class."""
    from attnfaith.metrics import bin_quartiles

    rows = [(ex["prediction"], ex["permutation"]) for ex in run["examples"] if ex.get("permutation")]
    if not rows:
        return None

    def bins(sel: list) -> list[dict[str, Any]]:
        nan = float("nan")
        return bin_quartiles([nan if r["median_tvd"] is None else r["median_tvd"] for _, r in sel],
                             [nan if r["max_attention"] is None else r["max_attention"] for _, r in sel])

    out = {"all": bins(rows)}
    for c in sorted({p for p, _ in rows}):
        out[str(c)] = bins([x for x in rows if x[0] == c])
    return out


def bins_markdown(rows: list[Mapping[str, Any]], what: str, by: str = "attention") -> str:
    """A :func:`attnfaith.metrics.bin_quartiles` list as a markdown table: per bin of the maximum ``by`` weight, n,
    median, IQR and mean of ``what``."""
    return markdown_table(
        [f"max {by}", "n", f"median {what}", "IQR", f"mean {what}"],
        [[r["bin"], str(r["n"]), fmt_number(r["median"], 4),
          "–" if not r["n"] else f"{fmt_number(r['q1'], 4)}–{fmt_number(r['q3'], 4)}", fmt_number(r["mean"], 4)]
         for r in rows])


def render_permutation_bins(run: Mapping[str, Any], table: Mapping[str, Any]) -> list[str]:
    """The markdown section of :func:`permutation_bins` (every example; the per-class numbers are in
    ``results.json``)."""
    return ["## Jain & Wallace (2019) §4.2: permuted attention, by maximum attention", "",
            f"Median output TVD over {run['config']['permutations']} permutations of layer {run['config']['layer']}'s "
            "attention over the real tokens, binned by the example's largest attention weight.", "",
            bins_markdown(table["all"], "ΔTVD"), ""]


register_evaluator(EvaluatorSpec(
    name="permutation", order=40, run=_run, writes=("permutation",), needs_attention=True,
    cost=lambda n, config, methods: config.permutations,
    record={"median_tvd": "median", "max_tvd": "max", "mean_tvd": From("tvd", _mean), "max_attention": "max_attention"},
    metrics=(Metric(key="permutation_median_tvd", header="permutation: median ΔTVD", per_method=False,
                    path=("permutation",), value="median_tvd",
                    description="Jain & Wallace §4.2: output change (TVD) when the attention over the real tokens is "
                                "randomly permuted; median over permutations"),),
    verdict=_verdict,
    tables=(Table(key="jw_permutation_bins", compute=permutation_bins, render=render_permutation_bins),),
    figures=(Figure(key="permutation_violin", draw=permutation_violin, title="Permuted attention (Jain & Wallace Fig. 3)",
                    caption="Median output change (TVD) over random permutations of the attention over the real "
                            "tokens, against the example's largest attention weight; a faithful attention changes the "
                            "output when permuted, above all where it is peaked."),),
))
