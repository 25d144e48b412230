"""The faithfulness report: summary statistics with bootstrap intervals, verdicts, and ``report.md``.

Everything here reads the per-example numbers of a run (the ``results.json`` dict written by
:func:`attnfaith.pipeline.run_evaluation`); nothing runs a model.

* :func:`bootstrap_mean` — mean and percentile bootstrap 95 % interval (seeded);
* :func:`summarise` — the method × metric table, the attention tests, Jain & Wallace's Table 2 rows, Serrano &
  Smith's flip table and one verdict per method;
* :func:`render_markdown` — ``report.md``;
* :func:`summary_table` — the method × metric table alone, as markdown (what ``attnfaith demo`` prints).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from attnfaith.results import fmt_number

__all__ = [
    "bootstrap_mean", "summarise", "render_markdown", "summary_table", "METRICS", "tau_strength", "finite_values",
]

#: resamples of the bootstrap
N_BOOT = 2000

#: the columns of the method × metric table: key → (header, better direction, description)
METRICS: dict[str, tuple[str, str, str]] = {
    "erasure_token_fraction": (
        "erasure (token): fraction removed to flip ↓", "lower",
        "mean over examples whose decision flips of the fraction of tokens deleted, in the method's order, until the "
        "predicted class changes (Serrano & Smith's multi-weight test, token level, deletion)"),
    "erasure_token_never": (
        "never flips (token)", "lower", "share of examples whose decision never flips, even with every token deleted"),
    "erasure_token_aopc": (
        "AOPC (token) ↑", "higher",
        "area over the perturbation curve: mean drop of the predicted-class probability over all deletion steps"),
    "erasure_attention_fraction": (
        "erasure (attention): fraction removed to flip ↓", "lower",
        "as the token level, but zeroing (and renormalising) the attention weights of the tested layer in the "
        "method's order (Serrano & Smith's setting)"),
    "erasure_attention_never": (
        "never flips (attention)", "lower", "share of examples whose decision never flips at the attention level"),
    "tau_loo": ("Kendall τ vs LOO", "higher",
                "per-example Kendall τ-b with leave-one-out importance over the real tokens (Jain & Wallace)"),
    "tau_gradient": ("Kendall τ vs gradient", "higher",
                     "per-example Kendall τ-b with gradient importance |∇ŷ·e| (Jain & Wallace)"),
    "rationale_precision": ("rationale P@k ↑", "higher",
                            "share of the method's top-k tokens that are planted rationale tokens (k = their number)"),
}

ATTENTION_TESTS: dict[str, tuple[str, str]] = {
    "permutation_median_tvd": ("permutation: median ΔTVD", "Jain & Wallace §4.2: output change (TVD) when the "
                               "attention over the real tokens is randomly permuted; median over permutations"),
    "single_delta_js": ("single weight: ΔJS (top − random)", "Serrano & Smith §4: JS divergence of the output when "
                        "the top attention weight is zeroed, minus when a random other one is"),
    "single_flip_top": ("single weight: flip rate, top removed", "Serrano & Smith §4"),
    "single_flip_random": ("single weight: flip rate, random removed", "Serrano & Smith §4"),
    "uniform_tvd": ("uniform attention: ΔTVD", "Wiegreffe & Pinter §3.1 at inference: output change when every "
                    "attention layer is made uniform"),
    "uniform_flip": ("uniform attention: flip rate", "Wiegreffe & Pinter §3.1"),
    "adversarial_jsd": ("adversarial attention: max JSD", "Jain & Wallace §4.3: most different attention (JSD, "
                        "nats, ≤ ln 2) keeping the output within TVD 0.05"),
}

METHOD_LABELS = {
    "attention": "attention",
    "rollout": "attention rollout",
    "gradient": "gradient × input",
    "ig": "integrated gradients",
    "loo": "leave-one-out",
    "random": "random",
}


# -------------------------------------------------------------------------------------------------------------
# statistics
# -------------------------------------------------------------------------------------------------------------


def finite_values(values: Iterable[Any]) -> np.ndarray:
    """The finite ``values`` as a float64 array, in order: None, NaN and ±inf left out."""
    arr = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return arr[np.isfinite(arr)]


def bootstrap_mean(values: Iterable[Any], seed: int = 0, n_boot: int = N_BOOT, level: float = 0.95) -> dict[str, Any]:
    """Mean of the finite ``values`` and its percentile bootstrap interval.

    ``n_boot`` resamples with replacement drawn from ``numpy.random.default_rng(seed)``; the interval is the
    ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of the resampled means. None/NaN values are left out.
    Returns ``{"mean", "lo", "hi", "n"}`` (None for an empty input; ``lo = hi = mean`` for one value).
    """
    x = finite_values(values)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "lo": mean, "hi": mean, "n": 1}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    means = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": mean, "lo": float(lo), "hi": float(hi), "n": n}


def bootstrap_paired_difference(a: Sequence[Any], b: Sequence[Any], seed: int = 0, n_boot: int = N_BOOT) -> dict:
    """Mean of ``a_i − b_i`` over the pairs where both are finite, with its bootstrap interval."""
    pairs = [(float(x) - float(y)) for x, y in zip(a, b)
             if x is not None and y is not None and math.isfinite(float(x)) and math.isfinite(float(y))]
    return bootstrap_mean(pairs, seed=seed, n_boot=n_boot)


def tau_strength(tau: float | None) -> str:
    """Words for a mean Kendall τ: none (|τ| < 0.1), weak (< 0.3), moderate (< 0.5), strong."""
    if tau is None:
        return "undefined"
    a = abs(tau)
    word = "no" if a < 0.1 else "weak" if a < 0.3 else "moderate" if a < 0.5 else "strong"
    return f"{word}{' negative' if tau < -0.1 else ''} agreement"


# -------------------------------------------------------------------------------------------------------------
# per-example extraction
# -------------------------------------------------------------------------------------------------------------


def _get(ex: Mapping[str, Any], *path: str) -> Any:
    cur: Any = ex
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return None
        cur = cur[key]
    return cur


def per_example(run: Mapping[str, Any], metric: str, method: str | None = None) -> list[Any]:
    """The per-example values of one metric (None where undefined), in example order."""
    out = []
    for ex in run["examples"]:
        if metric.startswith("erasure_"):
            _, level, what = metric.split("_", 2)
            rec = _get(ex, f"erasure_{level}", method)
            if rec is None:
                out.append(None)
            elif what == "fraction":
                out.append(rec["fraction_removed"])
            elif what == "never":
                out.append(0.0 if rec["flipped"] else 1.0)
            elif what == "aopc":
                out.append(rec["aopc"])
        elif metric.startswith("tau_"):
            out.append(_get(ex, "kendall", metric[4:], method, "tau"))
        elif metric == "rationale_precision":
            out.append(_get(ex, "rationale_precision", method))
        elif metric == "permutation_median_tvd":
            out.append(_get(ex, "permutation", "median_tvd"))
        elif metric == "single_delta_js":
            s = ex.get("single")
            out.append(s["delta_js"] if s and s.get("has_random") else None)
        elif metric == "single_flip_top":
            s = ex.get("single")
            out.append(None if not s or not s.get("has_random") else float(s["flip_top"]))
        elif metric == "single_flip_random":
            s = ex.get("single")
            out.append(None if not s or not s.get("has_random") else float(s["flip_random"]))
        elif metric == "uniform_tvd":
            out.append(_get(ex, "uniform", "tvd"))
        elif metric == "uniform_flip":
            u = ex.get("uniform")
            out.append(None if u is None else float(u["flipped"]))
        elif metric == "adversarial_jsd":
            out.append(_get(ex, "adversarial", "jsd"))
        else:
            raise KeyError(metric)
    return out


# -------------------------------------------------------------------------------------------------------------
# the summary
# -------------------------------------------------------------------------------------------------------------


def _methods_of(run: Mapping[str, Any]) -> list[str]:
    skipped = run.get("skipped", {})
    return [m for m in run["config"]["methods"] if m not in skipped]


def _evaluators_of(run: Mapping[str, Any]) -> list[str]:
    skipped = run.get("skipped", {})
    return [e for e in run["config"]["evaluators"] if e not in skipped]


def _jw_table(run: Mapping[str, Any], method: str = "attention") -> dict[str, dict[str, dict[str, Any]]]:
    """Jain & Wallace Table 2: per reference, per predicted class: τ mean, population std, share p ≤ 0.05, n."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for ref in ("gradient", "loo"):
        groups: dict[str, list[tuple[float, float]]] = {}
        for ex in run["examples"]:
            rec = _get(ex, "kendall", ref, method)
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


def _ss_flip_table(run: Mapping[str, Any]) -> dict[str, int] | None:
    rows = [ex["single"] for ex in run["examples"] if ex.get("single") and ex["single"].get("has_random")]
    if not any(ex.get("single") for ex in run["examples"]):
        return None
    t = {"both": 0, "only_top": 0, "only_random": 0, "neither": 0, "n": len(rows)}
    for s in rows:
        key = ("both" if s["flip_random"] else "only_top") if s["flip_top"] else (
            "only_random" if s["flip_random"] else "neither")
        t[key] += 1
    return t


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _verdicts(run: Mapping[str, Any], table: Mapping[str, Mapping[str, Any]], seed: int) -> dict[str, str]:
    methods = _methods_of(run)
    verdicts: dict[str, str] = {}
    has_random = "random" in methods
    for m in methods:
        parts: list[str] = []
        row = table[m]
        er = row.get("erasure_token_fraction")
        if er and er["mean"] is not None:
            never = row.get("erasure_token_never", {}).get("mean")
            text = f"deleting tokens in its order flips the decision after {_pct(er['mean'])} of them"
            if never:
                text += f" ({_pct(never)} of examples never flip)"
            if has_random and m != "random":
                rnd = table["random"].get("erasure_token_fraction")
                diff = bootstrap_paired_difference(per_example(run, "erasure_token_fraction", m),
                                                   per_example(run, "erasure_token_fraction", "random"), seed=seed)
                if rnd and rnd["mean"] is not None and diff["mean"] is not None:
                    text += f" vs {_pct(rnd['mean'])} for random"
                    if diff["hi"] is not None and diff["hi"] < 0:
                        text += " — more faithful than random"
                    elif diff["lo"] is not None and diff["lo"] > 0:
                        text += " — LESS faithful than random"
                    else:
                        text += " — not distinguishable from random"
                    text += (f" (paired difference {fmt_number(diff['mean'], 2, 'n/a')}, 95% CI "
                             f"[{fmt_number(diff['lo'], 2, 'n/a')}, {fmt_number(diff['hi'], 2, 'n/a')}])")
            parts.append(text)
        ea = row.get("erasure_attention_fraction")
        if m == "attention" and ea and ea["mean"] is not None:
            text = f"zeroing its attention weights flips after {_pct(ea['mean'])}"
            rnd = table.get("random", {}).get("erasure_attention_fraction")
            if rnd and rnd["mean"] is not None:
                text += f" vs {_pct(rnd['mean'])} for random"
                diff = bootstrap_paired_difference(per_example(run, "erasure_attention_fraction", m),
                                                   per_example(run, "erasure_attention_fraction", "random"), seed=seed)
                if diff["hi"] is not None and diff["hi"] < 0:
                    text += " (fewer: more faithful than random)"
                elif diff["lo"] is not None and diff["lo"] > 0:
                    text += " (more: less faithful than random)"
                elif diff["mean"] is not None:
                    text += " (not distinguishable)"
            never = row.get("erasure_attention_never", {}).get("mean")
            if never:
                text += f", and {_pct(never)} of examples never flip at the attention level"
            parts.append(text)
        refs = ("loo", "gradient") if m in ("attention", "rollout") else ("gradient",) if m == "loo" else ("loo",)
        for ref in refs:
            t = row.get(f"tau_{ref}")
            if t and t["mean"] is not None:
                name = "leave-one-out" if ref == "loo" else "gradient"
                parts.append(f"τ with {name} {fmt_number(t['mean'], 2, 'n/a')} ({tau_strength(t['mean'])})")
        rp = row.get("rationale_precision")
        if rp and rp["mean"] is not None:
            text = f"its top-k tokens recover {_pct(rp['mean'])} of the planted rationale"
            rr = table.get("random", {}).get("rationale_precision")
            if m != "random" and rr and rr["mean"] is not None:
                text += f" (random: {_pct(rr['mean'])})"
            parts.append(text)
        if m == "attention":
            att = run.get("summary_attention") or {}
            pm = att.get("permutation_median_tvd")
            if pm and pm["mean"] is not None:
                parts.append(f"permuting the attention moves the output by a median TVD of {fmt_number(pm['mean'], 3, 'n/a')} on "
                             f"average ({'the order of the weights matters' if pm['mean'] >= 0.05 else 'small: the prediction barely depends on which token gets which weight'})")
        verdicts[m] = "; ".join(parts) + "." if parts else "no evaluator produced a number for this method."
    return verdicts


def summarise(run: Mapping[str, Any]) -> dict[str, Any]:
    """The report's numbers: ``{"methods": {method: {metric: bootstrap}}, "attention": {...}, "jw_table2": ...,
    "ss_flip_table": ..., "verdicts": {...}, "accuracy": ..., "n_examples": ...}``."""
    seed = int(run.get("seed", 0))
    methods = _methods_of(run)
    examples = run["examples"]
    table: dict[str, dict[str, Any]] = {}
    for m in methods:
        row = {}
        for metric in METRICS:
            vals = per_example(run, metric, m)
            if any(v is not None for v in vals) or (metric.endswith("_never") and any(
                    _get(ex, f"erasure_{metric.split('_')[1]}", m) for ex in examples)):
                row[metric] = bootstrap_mean(vals, seed=seed)
        table[m] = row
    attention: dict[str, Any] = {}
    for metric in ATTENTION_TESTS:
        vals = per_example(run, metric)
        if any(v is not None for v in vals):
            attention[metric] = bootstrap_mean(vals, seed=seed)
    labels = [ex.get("label") for ex in examples]
    accuracy = None
    if examples and all(y is not None for y in labels):
        accuracy = bootstrap_mean([float(ex["correct"]) for ex in examples], seed=seed)
    uniform_acc = None
    if examples and all(y is not None for y in labels) and all(ex.get("uniform") for ex in examples):
        uniform_acc = bootstrap_mean([float(ex["uniform"]["prediction_uniform"] == ex["label"]) for ex in examples],
                                     seed=seed)
    summary = {
        "n_examples": len(examples),
        "accuracy": accuracy,
        "accuracy_uniform_attention": uniform_acc,
        "methods": table,
        "attention": attention,
        "jw_table2": _jw_table(run),
        "ss_flip_table": _ss_flip_table(run),
    }
    summary["verdicts"] = _verdicts({**run, "summary_attention": attention}, table, seed)
    return summary


# -------------------------------------------------------------------------------------------------------------
# markdown
# -------------------------------------------------------------------------------------------------------------


def _cell(b: Mapping[str, Any] | None, pct: bool = False, digits: int = 2) -> str:
    if not b or b.get("mean") is None:
        return "–"
    if pct:
        return f"{100 * b['mean']:.0f}% [{100 * b['lo']:.0f}, {100 * b['hi']:.0f}]"
    return f"{b['mean']:.{digits}f} [{b['lo']:.{digits}f}, {b['hi']:.{digits}f}]"


_PCT_METRICS = {"erasure_token_fraction", "erasure_token_never", "erasure_attention_fraction",
                "erasure_attention_never", "rationale_precision"}


def summary_table(run: Mapping[str, Any]) -> str:
    """The method × metric table (means and 95 % bootstrap intervals) as markdown; only columns with numbers."""
    summary = run["summary"]
    methods = [m for m in _methods_of(run) if m in summary["methods"]]
    cols = [c for c in METRICS if any(c in summary["methods"][m] for m in methods)]
    if not cols:
        return ("(no per-method metric in this run: the method × metric table needs the kendall or erasure "
                "evaluator, or a known rationale)")
    head = ["method"] + [METRICS[c][0] for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for m in methods:
        row = summary["methods"][m]
        cells = [METHOD_LABELS.get(m, m)]
        for c in cols:
            cells.append(_cell(row.get(c), pct=c in _PCT_METRICS) if c in row else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _figure_block(run: Mapping[str, Any]) -> list[str]:
    figs = run.get("figures") or {}
    out = []
    for key, info in figs.items():
        out += [f"**{info['title']}**", "", f"![{info['title']}]({info['path']})", "", info["caption"], ""]
    return out


def truncation_sentence(n_truncated: int, n_texts: int, max_length: int) -> str:
    """The sentence that says how many texts were cut to ``max_length`` tokens (report, notes and CLI warning)."""
    return (f"{n_truncated} of {n_texts} texts are longer than --max-length {max_length} tokens and were truncated "
            "to it: their later tokens are not explained.")


def render_markdown(run: Mapping[str, Any]) -> str:
    """``report.md`` for a run."""
    summary = run["summary"]
    cfg = run["config"]
    model = run["model"]
    data = run.get("data", {})
    seed = cfg["seed"]
    title = run.get("title") or f"faithfulness of {model.get('source') or model.get('class')}"
    lines = [f"# attnfaith report: {title}", ""]
    desc = [f"**Model** `{model.get('source') or model.get('name_or_path') or model['class']}` "
            f"({model['class']}, {model['parameters']:,} parameters)"]
    if data.get("path"):
        desc.append(f"**data** `{data['path']}`" + (f" (split {data['split']})" if data.get("split") else ""))
    desc.append(f"**{summary['n_examples']} examples**")
    if summary.get("accuracy"):
        desc.append(f"accuracy {_cell(summary['accuracy'], pct=True)}")
    desc.append(f"attention layer {cfg['layer']}, seed {seed}")
    lines += [", ".join(desc) + ".", ""]
    if data.get("n_truncated"):
        lines += [f"**Note:** {truncation_sentence(data['n_truncated'], data['n_examples'], cfg['max_length'])}", ""]
    lines += ["Intervals are 95% percentile bootstrap intervals of the mean over examples "
              f"({N_BOOT} resamples, seed {seed}). Definitions: `docs/metrics.md`.", ""]

    lines += ["## Which explanation is faithful?", "", summary_table(run), ""]
    lines += ["↓ lower is more faithful, ↑ higher is more faithful. Kendall τ measures agreement with a reference "
              "importance, not faithfulness itself.", ""]
    for m, v in summary["verdicts"].items():
        lines.append(f"- **{METHOD_LABELS.get(m, m)}**: {v}")
    lines.append("")
    if run.get("skipped"):
        lines += ["Not run on this model:", ""]
        for k, v in run["skipped"].items():
            lines.append(f"- `{k}`: {v}")
        lines.append("")

    att = summary.get("attention") or {}
    if att:
        lines += [f"## Tests of the attention itself (layer {cfg['layer']})", "",
                  "| test | mean [95% CI] | n | what it is |", "|---|---|---|---|"]
        for key, b in att.items():
            name, what = ATTENTION_TESTS[key]
            pct = key.endswith("flip") or "flip_" in key
            lines.append(f"| {name} | {_cell(b, pct=pct, digits=3)} | {b['n']} | {what} |")
        if summary.get("accuracy_uniform_attention") and summary.get("accuracy"):
            lines.append("")
            lines.append(f"Accuracy with the model's attention {_cell(summary['accuracy'], pct=True)}, with uniform "
                         f"attention {_cell(summary['accuracy_uniform_attention'], pct=True)}.")
        lines.append("")

    jw = summary.get("jw_table2") or {}
    if jw:
        lines += ["## Jain & Wallace (2019), Table 2: Kendall τ between attention and the references", "",
                  "Per predicted class: mean ± std (population) of the per-example τ-b over the real tokens, and "
                  "Sig. Frac. = share of examples with p ≤ 0.05.", ""]
        refs = [r for r in ("gradient", "loo") if r in jw]
        head = ["predicted class"]
        for r in refs:
            head += [f"{'Gradient' if r == 'gradient' else 'Leave-one-out'} μ ± σ", "Sig. Frac."]
        head.append("n")
        lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
        id2label = model.get("id2label") or {}
        keys = list(next(iter(jw.values())).keys())
        for key in keys:
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

    ss = summary.get("ss_flip_table")
    if ss:
        lines += ["## Serrano & Smith (2019): single attention weight removed, decision flips", "",
                  f"Over {ss['n']} examples with at least two tokens: does zeroing the top attention weight (rows) "
                  "or a random other weight (columns) flip the decision?", "",
                  "| top removed flips? \\ random removed flips? | yes | no |", "|---|---|---|",
                  f"| yes | {ss['both']} | {ss['only_top']} |", f"| no | {ss['only_random']} | {ss['neither']} |", ""]

    fig_lines = _figure_block(run)
    if fig_lines:
        lines += ["## Figures", ""] + fig_lines

    lines += ["## Configuration", "", "```"]
    for k, v in cfg.items():
        lines.append(f"{k}: {v}")
    lines.append(f"device: {run.get('device')}")
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in run.get("versions", {}).items()
                                          if k not in ("platform",)))
    t = run.get("timings", {})
    if t:
        lines.append(f"evaluation time: {t.get('evaluation_seconds')} s over {t.get('chunks')} chunk(s)"
                     + (f", {t.get('chunks_resumed')} resumed" if t.get("chunks_resumed") else ""))
        stages = t.get("stages", {})
        if stages:
            lines.append("stages: " + ", ".join(f"{k} {v:.2f}s" for k, v in sorted(stages.items(),
                                                                               key=lambda kv: -kv[1])))
    lines += ["```", ""]
    if run.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in run["notes"]] + [""]
    lines.append("Every per-example number is in `results.json`.")
    return "\n".join(lines) + "\n"
