"""``kendall``: :class:`attnfaith.KendallTau` of every method against the references ``loo`` and ``gradient`` (when
they are among the methods); attention against gradient / leave-one-out are Jain & Wallace's Table 2.

Records: ``kendall[reference][method] = {tau, p}`` (Kendall τ-b over the items and its p-value).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from attnfaith.results import fmt_number
from attnfaith.study import plots
from attnfaith.study.registry import (
    METHOD, ChunkContext, EvaluatorSpec, Figure, Metric, Table, Verdict, method_label, method_spec, record_at,
    register_evaluator,
)
from attnfaith.study.statistics import finite_values, tau_strength

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
            parts.append(f"τ with {_NAMES[ref]} {fmt_number(t['mean'], 2, 'n/a')} ({tau_strength(t['mean'])})")
    return parts


def jw_table(run: Mapping[str, Any], method: str = TABLE_METHOD) -> dict[str, dict[str, dict[str, Any]]]:
    """Jain & Wallace Table 2: per reference, per predicted class: τ mean, population std, share p ≤ 0.05, n."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for ref in ("gradient", "loo"):
        groups: dict[str, list[tuple[float, float]]] = {}
        for ex in run["examples"]:
            rec = record_at(ex, ("kendall", ref, method))
            if rec is None or rec["tau"] is None or rec["p"] is None:
                continue
            groups.setdefault(str(ex["prediction"]), []).append((rec["tau"], rec["p"]))
        if not groups:
            continue
        rows = {}
        everything = [v for k in sorted(groups, key=int) for v in groups[k]]
        for key, vals in [(k, groups[k]) for k in sorted(groups, key=int)] + [("all", everything)]:
            tau = np.array([v[0] for v in vals])
            p = np.array([v[1] for v in vals])
            rows[key] = {"mean": float(tau.mean()), "std": float(tau.std()), "sig_frac": float((p <= 0.05).mean()),
                         "n": int(tau.size)}
        out[ref] = rows
    return out


def render_jw_table(run: Mapping[str, Any], jw: Mapping[str, Any]) -> list[str]:
    """The markdown section of :func:`jw_table`."""
    lines = ["## Jain & Wallace (2019), Table 2: Kendall τ between attention and the references", "",
             "Per predicted class: mean ± std (population) of the per-example τ-b over the real tokens, and "
             "Sig. Frac. = share of examples with p ≤ 0.05.", ""]
    refs = [r for r in ("gradient", "loo") if r in jw]
    head = ["predicted class"]
    for r in refs:
        head += [f"{'Gradient' if r == 'gradient' else 'Leave-one-out'} μ ± σ", "Sig. Frac."]
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
            cells += [f"{s['mean']:.2f} ± {s['std']:.2f}", f"{s['sig_frac']:.2f}"]
            n = max(n, s["n"])
        cells.append(str(n))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def kendall_histograms(run: Mapping[str, Any], path: Path) -> bool:
    """Histograms of the per-example Kendall τ-b of each method against each reference (one panel per reference;
    dashed lines: means)."""
    refs = [r for r in REFERENCES if any(((ex.get("kendall") or {}).get(r)) for ex in run["examples"])]
    if not refs:
        return False
    fig, axes = plots.pyplot().subplots(1, len(refs), figsize=(6.2 * len(refs), 4.0), squeeze=False)
    bins = np.linspace(-1, 1, 21)
    drawn = False
    for ax, ref in zip(axes[0], refs):
        for m in plots.methods_of(run):
            if m == ref:
                continue
            vals = finite_values((record_at(ex, ("kendall", ref, m)) or {}).get("tau") for ex in run["examples"])
            if not vals.size:
                continue
            c = plots.color(m)
            lw = 2.4 if method_spec(m).reads_attention else 1.4
            ax.hist(vals, bins=bins, histtype="step", lw=lw, color=c, label=f"{method_label(m)} (mean {vals.mean():.2f})")
            ax.axvline(vals.mean(), color=c, ls="--", lw=1)
            drawn = True
        ax.set_xlim(-1, 1)
        ax.set_xlabel(f"Kendall τ-b with {'leave-one-out' if ref == 'loo' else 'gradient'} importance (per example)")
        ax.set_ylabel("examples")
        ax.set_title(f"reference: {'leave-one-out' if ref == 'loo' else 'gradient × input'}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    return plots.finish(fig, path, drawn)


register_evaluator(EvaluatorSpec(
    name="kendall", order=20, run=_run, writes=("kendall",), record={"tau": "tau", "p": "pvalue"},
    metrics=METRICS, verdict=_verdict,
    tables=(Table(key="jw_table2", compute=jw_table, render=render_jw_table),),
    figures=(Figure(key="kendall_tau", draw=kendall_histograms, title="Kendall τ with the reference importances",
                    caption="Per-example Kendall τ-b between each method's scores and leave-one-out / gradient "
                            "importance over the real tokens (Jain & Wallace 2019, §4.1); dashed lines: means."),),
))
