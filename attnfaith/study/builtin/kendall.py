"""``kendall``: :class:`attnfaith.KendallTau` of every method against the references ``loo`` and ``gradient`` (when
they are among the methods); attention against gradient / leave-one-out are Jain & Wallace's Table 2.

Records: ``kendall[reference][method] = {tau, p}`` (Kendall τ-b over the items and its p-value).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from attnfaith.results import fmt_number
from attnfaith.study import plots
from attnfaith.study.registry import (
    METHOD, ChunkContext, EvaluatorSpec, Figure, Metric, Table, Verdict, method_spec, record_at,
    register_evaluator,
)
from attnfaith.study.statistics import few, finite_values, tau_strength

#: the references, in the order of the report's columns
REFERENCES = ("loo", "gradient")
#: the method of Jain & Wallace's Table 2
TABLE_METHOD = "attention"
_NAMES = {"loo": "leave-one-out", "gradient": "gradient"}


def _run(ctx: ChunkContext) -> Iterator[tuple[tuple[str, ...], Any]]:
    from attnfaith.evaluators import KendallTau

    for ref in REFERENCES:
        if ref not in ctx.scores:
            continue
        kt = KendallTau(ctx.model, reference=ctx.scores[ref], max_examples_per_batch=ctx.variants_per_forward)
        for m in ctx.methods:
            if m != ref:
                yield ("kendall", ref, m), kt.evaluate(ctx.inputs, attributions=ctx.scores[m])


METRICS = (
    Metric(key="tau_loo", header="Kendall τ vs LOO", better="higher", path=("kendall", "loo", METHOD), value="tau",
           description="per-example Kendall τ-b with leave-one-out importance over the real tokens (Jain & Wallace)"),
    Metric(key="tau_gradient", header="Kendall τ vs gradient", better="higher", path=("kendall", "gradient", METHOD),
           value="tau", description="per-example Kendall τ-b with gradient importance |∇ŷ·e| (Jain & Wallace)"),
)


def _verdict(v: Verdict) -> list[str]:
    m, row = v.method, v.table[v.method]
    refs = REFERENCES if method_spec(m).reads_attention else ("gradient",) if m == "loo" else ("loo",)
    parts = []
    for ref in refs:
        t = row.get(f"tau_{ref}")
        if t and t["mean"] is not None:
            only = f", over only {t['n']} examples" if few(t["n"]) else ""
            parts.append(f"τ with {_NAMES[ref]} {fmt_number(t['mean'], 2, 'n/a')} ({tau_strength(t['mean'])}{only})")
    return parts


#: the significance level of Table 2's shares
ALPHA = 0.05


def jw_table(run: Mapping[str, Any], method: str = TABLE_METHOD) -> dict[str, dict[str, dict[str, Any]]]:
    """Jain & Wallace Table 2 of ``method``: per reference, per predicted class (and ``"all"``), over the examples
    whose τ is defined: τ mean, population std, ``sig_frac`` (share with two-sided p ≤ 0.05, JW's "Sig. Frac."),
    ``sig_pos_frac`` / ``sig_neg_frac`` (share with p ≤ 0.05 and τ > 0 / τ < 0: agreement and significant
    disagreement, which JW's share counts alike) and n. An undefined p-value counts as not significant."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for ref in ("gradient", "loo"):
        groups: dict[str, list[tuple[float, float]]] = {}
        for ex in run["examples"]:
            rec = record_at(ex, ("kendall", ref, method))
            if rec is None or rec["tau"] is None:
                continue
            p = math.nan if rec["p"] is None else rec["p"]
            groups.setdefault(str(ex["prediction"]), []).append((rec["tau"], p))
        if not groups:
            continue
        rows = {}
        everything = [v for k in sorted(groups, key=int) for v in groups[k]]
        for key, vals in [(k, groups[k]) for k in sorted(groups, key=int)] + [("all", everything)]:
            tau = np.array([v[0] for v in vals], dtype=np.float64)
            sig = np.array([v[1] for v in vals], dtype=np.float64) <= ALPHA  # NaN compares False
            rows[key] = {"mean": float(tau.mean()), "std": float(tau.std()), "sig_frac": float(sig.mean()),
                         "sig_pos_frac": float((sig & (tau > 0)).mean()),
                         "sig_neg_frac": float((sig & (tau < 0)).mean()), "n": int(tau.size)}
        out[ref] = rows
    return out


def render_jw_table(run: Mapping[str, Any], jw: Mapping[str, Any]) -> list[str]:
    """The markdown section of :func:`jw_table`."""
    lines = ["## Jain & Wallace (2019), Table 2: Kendall τ between attention and the references", "",
             "Per predicted class: mean ± std (population) of the per-example τ-b over the real tokens, and "
             "Sig. Frac. = share of examples with p ≤ 0.05 (two-sided, as Jain & Wallace), split into τ > 0 "
             "(agreement) and τ < 0 (significant disagreement).", ""]
    refs = [r for r in ("gradient", "loo") if r in jw]
    head = ["predicted class"]
    for r in refs:
        head += [f"{'Gradient' if r == 'gradient' else 'Leave-one-out'} μ ± σ", "Sig. Frac. (τ > 0 / τ < 0)"]
    head.append("n")
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    id2label = run["model"].get("id2label") or {}
    for key in list(next(iter(jw.values())).keys()):
        label = key if key == "all" else f"{key} ({id2label.get(key, key)})" if id2label.get(key) else key
        cells = [label]
        n = 0
        for r in refs:
            s = jw[r].get(key)
            if s is None:
                cells += ["–", "–"]
                continue
            cells += [f"{s['mean']:.2f} ± {s['std']:.2f}",
                      f"{s['sig_frac']:.2f} ({s['sig_pos_frac']:.2f} / {s['sig_neg_frac']:.2f})"]
            n = max(n, s["n"])
        cells.append(str(n))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def kendall_boxes(run: Mapping[str, Any], path: Path) -> bool:
    """Per-example Kendall τ-b of each method against each reference (one panel per reference): per method, a
    box per predicted class (2 to 4 classes; one box otherwise) with every example as a point, the mean as a
    diamond; the examples' number under each method's name."""
    refs = [r for r in REFERENCES if any(((ex.get("kendall") or {}).get(r)) for ex in run["examples"])]
    if not refs:
        return False
    classes = sorted({ex["prediction"] for ex in run["examples"]})
    groups = classes if 1 < len(classes) <= 4 else [None]
    width = 0.8 / len(groups)
    n_methods = max(len([m for m in plots.methods_of(run) if m != r]) for r in refs)
    fig, axes = plots.pyplot().subplots(1, len(refs), figsize=(max(4.0, 1.0 * n_methods + 1.2) * len(refs), 3.8),
                                        squeeze=False, sharey=True)
    drawn = False
    for ax, ref in zip(axes[0], refs):
        ticks, labels = [], []
        for m in [m for m in plots.methods_of(run) if m != ref]:
            recs = [(ex["prediction"], (record_at(ex, ("kendall", ref, m)) or {}).get("tau")) for ex in run["examples"]]
            every = finite_values(t for _, t in recs)
            if not every.size:
                continue
            x = len(ticks)
            for gi, cls in enumerate(groups):
                vals = finite_values(t for c, t in recs if cls is None or c == cls)
                if not vals.size:
                    continue
                xg = x + (gi - (len(groups) - 1) / 2) * width
                c = plots.class_color(gi) if cls is not None else plots.color(m)
                bp = ax.boxplot([vals], positions=[xg], widths=width * 0.8, patch_artist=True, showfliers=False,
                                medianprops=dict(color="black", lw=1))
                bp["boxes"][0].set_facecolor(c)
                bp["boxes"][0].set_alpha(0.35)
                plots.strip(ax, xg, vals, c, width=width * 0.6, seed=x * 8 + gi, size=6 if vals.size >= plots.SPARSE
                            else 12, alpha=0.5 if vals.size >= plots.SPARSE else 0.85)
                ax.scatter([xg], [vals.mean()], marker="D", s=22, color="white", edgecolors="black", zorder=4)
            ticks.append(x)
            labels.append(f"{plots.short_label(m)}\nn={every.size}")
            drawn = True
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels)
        ax.set_ylim(-1.05, 1.05)
        ax.grid(axis="x", visible=False)
        ax.set_ylabel("Kendall τ-b per example")
        ax.set_title(f"reference: {'leave-one-out' if ref == 'loo' else 'gradient × input'}")
    if groups != [None]:
        from matplotlib.patches import Patch

        id2label = run["model"].get("id2label") or {}
        handles = [Patch(facecolor=plots.class_color(gi), alpha=0.5) for gi in range(len(groups))]
        names = [f"{c} ({id2label[str(c)]})" if id2label.get(str(c)) else str(c) for c in groups]
        plots.legend_outside(axes[0][-1], handles, names, title="predicted class")
    return plots.finish(fig, path, drawn)


register_evaluator(EvaluatorSpec(
    name="kendall", order=20, run=_run, writes=("kendall",), record={"tau": "tau", "p": "pvalue"},
    cost=lambda n, config, methods: 0,
    metrics=METRICS, verdict=_verdict,
    tables=(Table(key="jw_table2", compute=jw_table, render=render_jw_table),),
    figures=(Figure(key="kendall_tau", draw=kendall_boxes, title="Kendall τ with the reference importances",
                    caption="Per-example Kendall τ-b between each method's scores and leave-one-out / gradient "
                            "importance over the real tokens (Jain & Wallace 2019, §4.1), by method and predicted "
                            "class: boxes (quartiles), every example as a dot, ◇ the mean."),),
))
