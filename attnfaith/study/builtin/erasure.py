"""``erasure``: :class:`attnfaith.ErasureFlip` for every method, at each of ``config.erasure_levels``.

``level="token"``, ``erase="delete"``: the tokens leave the input in the method's order (every method on an equal
footing); ``level="attention"``: the method's ranking decides which attention weights of the layer are zeroed and
renormalised (Serrano & Smith's setting). The random method uses Serrano & Smith's ``n_random`` seeded random orders.
Records: ``erasure_<level>[method] = {fraction_removed, n_removed, flipped, aopc, curve}``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from attnfaith.results import fmt_number, markdown_table
from attnfaith.study import plots
from attnfaith.study.registry import (
    METHOD, ChunkContext, EvaluatorSpec, Figure, Metric, Table, Verdict, method_label, method_spec,
    register_evaluator,
)
from attnfaith.study.statistics import few, finite_values, pair_of, percent, versus_clause

#: the method every other is compared with in the verdicts
BASELINE = "random"
#: the skip key of the attention level (set when the model's attention is unreachable)
ATTENTION_LEVEL = "erasure:attention"


def _run(ctx: ChunkContext) -> Iterator[tuple[tuple[str, ...], Any]]:
    from attnfaith.evaluators import ErasureFlip

    config = ctx.config
    for level in config.erasure_levels:
        if level == "attention" and ATTENTION_LEVEL in ctx.skipped:
            continue
        ef = ErasureFlip(ctx.model, level=level, layer=config.layer, erase="delete", n_random=config.n_random,
                         seed=ctx.seed, max_examples_per_batch=ctx.variants_per_forward)
        for m in ctx.methods:
            yield (f"erasure_{level}", m), ef.evaluate(ctx.inputs, attributions=ctx.attribution(m), name=m,
                                                       example_ids=ctx.example_ids)


def _metrics(level: str, what: str) -> tuple[Metric, ...]:
    path = (f"erasure_{level}", METHOD)
    fraction = Metric(
        key=f"erasure_{level}_fraction", header=f"erasure ({level}): fraction removed to flip ↓", better="lower",
        percent=True, path=path, value="fraction_removed", description=what)
    never = Metric(
        key=f"erasure_{level}_never", header=f"never flips ({level})", better="lower", percent=True, path=path,
        value=lambda r: 0.0 if r["flipped"] else 1.0,
        description="share of examples whose decision never flips, even with every token deleted" if level == "token"
        else "share of examples whose decision never flips at the attention level")
    if level == "attention":
        return fraction, never
    aopc = Metric(key="erasure_token_aopc", header="AOPC (token) ↑", better="higher", path=path, value="aopc",
                  description="area over the perturbation curve: mean drop of the predicted-class probability over "
                              "all deletion steps")
    return fraction, never, aopc


TOKEN = _metrics("token", "mean over examples whose decision flips of the fraction of tokens deleted, in the method's "
                 "order, until the predicted class changes (Serrano & Smith's multi-weight test, token level, deletion)")
ATTENTION = _metrics("attention", "as the token level, but zeroing (and renormalising) the attention weights of the "
                     "tested layer in the method's order (Serrano & Smith's setting)")


def _verdict(v: Verdict) -> list[str]:
    m, row, table = v.method, v.table[v.method], v.table
    parts: list[str] = []
    er = row.get("erasure_token_fraction")
    if er and er["mean"] is not None:
        never = row.get("erasure_token_never", {}).get("mean")
        text = f"deleting tokens in its order flips the decision after {percent(er['mean'])} of them"
        if few(er["n"]):
            text += f" (on the {er['n']} examples that flip)"
        if never:
            text += f" ({percent(never)} of examples never flip)"
        rnd = table.get(BASELINE, {}).get("erasure_token_fraction")
        pair = pair_of(v.comparisons.get(TOKEN[0].key), m, BASELINE)
        if m != BASELINE and rnd and rnd["mean"] is not None and pair:
            text += f" vs {percent(rnd['mean'])} for random — {versus_clause(pair, 'random')}"
        parts.append(text)
    ea = row.get("erasure_attention_fraction")
    if m == "attention" and ea and ea["mean"] is not None:
        text = (f"zeroing its attention weights flips after {percent(ea['mean'])}"
                + (f" (n = {ea['n']} examples flip)" if few(ea["n"]) else ""))
        rnd = table.get(BASELINE, {}).get("erasure_attention_fraction")
        pair = pair_of(v.comparisons.get(ATTENTION[0].key), m, BASELINE)
        if rnd and rnd["mean"] is not None and pair:
            text += f" vs {percent(rnd['mean'])} for random — {versus_clause(pair, 'random')}"
        never = row.get("erasure_attention_never", {}).get("mean")
        if never:
            text += f", and {percent(never)} of examples never flip at the attention level"
        parts.append(text)
    return parts


# -------------------------------------------------------------------------------------------------------------
# figures
# -------------------------------------------------------------------------------------------------------------


def _level_panels(run: Mapping[str, Any]):
    """``(fig, [(ax, level), ...])``: one panel per erasure level the run has; None when it has none."""
    levels = [lv for lv in ("token", "attention") if any(ex.get(f"erasure_{lv}") for ex in run["examples"])]
    if not levels:
        return None
    fig, axes = plots.pyplot().subplots(1, len(levels), figsize=(6.2 * len(levels), 4.2), squeeze=False)
    return fig, list(zip(axes[0], levels))


def _level_title(run: Mapping[str, Any], level: str) -> str:
    return "token deletion" if level == "token" else f"attention erasure (layer {run['config']['layer']})"


def erasure_curves(run: Mapping[str, Any], path: Path, grid_points: int = 21) -> bool:
    """Mean probability of the originally predicted class against the fraction of items removed, one line per
    method, with a 95 % band (mean ± 1.96 standard errors over examples); one panel per erasure level. Each
    example's curve (points at k / n) is interpolated linearly onto a common grid. One legend, right of the
    panels: ``n`` once in its title when every line has the same number of examples, else in each entry."""
    made = _level_panels(run)
    if made is None:
        return False
    fig, panels = made
    grid = np.linspace(0.0, 1.0, grid_points)
    drawn = False
    lines: dict[str, Any] = {}
    counts: dict[str, set[int]] = {}
    for ax, level in panels:
        for m in plots.methods_of(run):
            rows = []
            for ex in run["examples"]:
                rec = (ex.get(f"erasure_{level}") or {}).get(m)
                if not rec or not rec["curve"] or len(rec["curve"]) < 2:
                    continue
                c = np.asarray([np.nan if v is None else v for v in rec["curve"]], dtype=np.float64)
                x = np.arange(len(c)) / (len(c) - 1)
                ok = np.isfinite(c)
                if ok.sum() < 2:
                    continue
                rows.append(np.interp(grid, x[ok], c[ok]))
            if not rows:
                continue
            Y = np.vstack(rows)
            mean = Y.mean(0)
            se = Y.std(0, ddof=1) / math.sqrt(len(Y)) if len(Y) > 1 else np.zeros_like(mean)
            c = plots.color(m)
            lines[m] = ax.plot(grid, mean, color=c, lw=1.8)[0]
            counts.setdefault(m, set()).add(len(Y))
            ax.fill_between(grid, mean - 1.96 * se, mean + 1.96 * se, color=c, alpha=0.15, lw=0)
            drawn = True
        ax.set_xlabel("fraction of tokens removed, in the method's order" if level == "token"
                      else "fraction of attention weights zeroed, in the method's order")
        ax.set_ylabel("mean P(originally predicted class)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.axhline(0.5, color="black", lw=0.6, ls=":")
        ax.set_title(_level_title(run, level))
    ns = set().union(*counts.values()) if counts else set()
    if len(ns) == 1:
        labels, title = [method_label(m) for m in lines], f"n = {ns.pop()} examples"
    else:
        labels = [f"{method_label(m)} (n={'/'.join(map(str, sorted(counts[m])))})" for m in lines]
        title = "method (examples)"
    plots.legend_outside(panels[-1][0], list(lines.values()), labels, title=title)
    fig.suptitle("Erasure curves: the faster a curve falls, the more faithful the ranking", fontsize=10)
    return plots.finish(fig, path, drawn)


def flip_boxplot(run: Mapping[str, Any], path: Path) -> bool:
    """Box plots of the fraction of items removed until the decision flips, per method (examples that never flip
    are left out; how many did flip is in the tick labels); one panel per erasure level. A box of fewer than
    :data:`attnfaith.study.plots.SPARSE` examples shows its points too."""
    made = _level_panels(run)
    if made is None:
        return False
    fig, panels = made
    drawn = False
    for ax, level in panels:
        data, labels, colors = [], [], []
        for m in plots.methods_of(run):
            recs = [(ex.get(f"erasure_{level}") or {}).get(m) for ex in run["examples"]]
            recs = [r for r in recs if r]
            if not recs:
                continue
            vals = finite_values(r["fraction_removed"] for r in recs)
            data.append(vals if vals.size else np.array([np.nan]))
            labels.append(f"{plots.short_label(m)}\n{vals.size}/{len(recs)} flip")
            colors.append(plots.color(m) or "#333333")
        if not data:
            ax.set_visible(False)
            continue
        bp = ax.boxplot([d[np.isfinite(d)] if np.isfinite(d).any() else [] for d in data], patch_artist=True,
                        widths=0.6, showmeans=True, meanprops=dict(marker="D", markerfacecolor="white",
                                                                   markeredgecolor="black", markersize=5))
        for patch, c in zip(bp["boxes"], colors):
            patch.set_facecolor(c)
            patch.set_alpha(0.55)
        for i, (d, c) in enumerate(zip(data, colors), start=1):
            if not np.isfinite(d).any():
                ax.text(i, 0.5, "never\nflips", ha="center", va="center", fontsize=8, color="#555555")
            elif d.size < plots.SPARSE:
                bp["fliers"][i - 1].set_visible(False)  # every point is drawn
                plots.strip(ax, i, d, c, width=0.35, seed=i, size=14, alpha=0.9)
        ax.set_xticks(range(1, len(labels) + 1))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("fraction removed until the decision flips")
        ax.set_title(_level_title(run, level))
        ax.grid(axis="x", visible=False)
        drawn = True
    fig.suptitle(f"Fraction removed until the decision flips (lower = more faithful; ◇ = mean; dots: every "
                 f"example of a box with fewer than {plots.SPARSE})", fontsize=10)
    return plots.finish(fig, path, drawn)


# -------------------------------------------------------------------------------------------------------------
# Serrano & Smith §5: the rankings compared
# -------------------------------------------------------------------------------------------------------------


def ranking_comparison(run: Mapping[str, Any], methods: Sequence[str] | None = None
                       ) -> dict[str, dict[str, Any]] | None:
    """Serrano & Smith §5's comparison of the rankings, per erasure level: for each method (of ``methods``, default
    every method of the run) the share of examples whose decision flips, the mean and median fraction removed on
    its own flipped examples, and the mean and median fraction on the ``n_common`` examples where every compared
    method flipped the decision (a common set); ``order_common`` / ``order_own``: the methods by those means, fewest
    removed first (a method without a number last)."""
    out: dict[str, dict[str, Any]] = {}
    for level in ("token", "attention"):
        key = f"erasure_{level}"
        methods_here = [m for m in (plots.methods_of(run) if methods is None else methods)
                        if any((ex.get(key) or {}).get(m) for ex in run["examples"])]
        if not methods_here:
            continue
        frac = {m: np.array([math.nan if ((ex.get(key) or {}).get(m) or {}).get("fraction_removed") is None
                             else ex[key][m]["fraction_removed"] for ex in run["examples"]], dtype=np.float64)
                for m in methods_here}
        common = np.logical_and.reduce([np.isfinite(f) for f in frac.values()])
        rows: dict[str, Any] = {}
        for m, f in frac.items():
            own = f[np.isfinite(f)]
            rows[m] = {"flipped_share": float(np.isfinite(f).mean()),
                       "mean_fraction": float(own.mean()) if own.size else None,
                       "median_fraction": float(np.median(own)) if own.size else None,
                       "mean_fraction_common": float(f[common].mean()) if common.any() else None,
                       "median_fraction_common": float(np.median(f[common])) if common.any() else None}

        def order(field: str) -> list[str]:
            return sorted(rows, key=lambda m: math.inf if rows[m][field] is None else rows[m][field])

        out[level] = {"n_common": int(common.sum()), "methods": rows, "order_common": order("mean_fraction_common"),
                      "order_own": order("mean_fraction")}
    return out or None


def render_ranking_comparison(run: Mapping[str, Any], table: Mapping[str, Any]) -> list[str]:
    """The markdown section of :func:`ranking_comparison`."""
    lines = ["## Serrano & Smith (2019) §5: the rankings compared", ""]
    for level, t in table.items():
        lines += [f"{_level_title(run, level).capitalize()}: fraction removed until the decision flips, on each "
                  f"method's own flipped examples and on the {t['n_common']} examples where every method flipped "
                  f"(fewest first there: {' < '.join(t['order_common'])}).", "",
                  markdown_table(["method", "flips", "mean fraction (own)", "median (own)", "mean fraction (common)",
                                  "median (common)"],
                                 [[method_label(m), percent(r["flipped_share"]), fmt_number(r["mean_fraction"], 3),
                                   fmt_number(r["median_fraction"], 3), fmt_number(r["mean_fraction_common"], 3),
                                   fmt_number(r["median_fraction_common"], 3)] for m, r in t["methods"].items()]), ""]
    return lines


register_evaluator(EvaluatorSpec(
    name="erasure", order=10, run=_run, writes=("erasure_token", "erasure_attention"), needs_items=True,
    cost=lambda n, config, methods: len(config.erasure_levels) * n * sum(
        config.n_random if method_spec(m).ranking == "random" else 1 for m in methods),
    attention_parts=(ATTENTION_LEVEL,),
    record={"fraction_removed": "fraction_removed", "n_removed": "n_removed", "flipped": "flipped", "aopc": "aopc",
            "curve": "curve"},
    metrics=TOKEN + ATTENTION, verdict=_verdict,
    tables=(Table(key="ss_rankings", compute=ranking_comparison, render=render_ranking_comparison),),
    figures=(
        Figure(key="erasure_curves", draw=erasure_curves, title="Erasure curves",
               caption="Mean probability of the originally predicted class as tokens are deleted (left) or attention "
                       "weights zeroed (right) in each method's order, against the fraction removed; bands: 95% "
                       "interval of the mean (±1.96 standard errors). A faithful ranking makes the curve fall fast."),
        Figure(key="flip_fraction", draw=flip_boxplot, title="Fraction removed until the decision flips",
               caption="Per method, the fraction of tokens (or attention weights) removed in its order before the "
                       "predicted class changes; examples that never flip are left out (their number is under each "
                       "box)."),
    ),
))
