"""The summary of a study run and its ``report.md``.

Everything here reads the per-example records of a run (the ``results.json`` dict of
:func:`attnfaith.study.runner.run_evaluation`) through the registered report parts
(:func:`attnfaith.study.registry.report_parts`); nothing runs a model, and nothing names an evaluator or a field.

* :func:`summarise`: ``n_examples``, ``accuracy``, every part's :class:`~attnfaith.study.registry.Statistic`,
  ``methods`` (per method, every per-method :class:`~attnfaith.study.registry.Metric` with a value, as a
  :func:`~attnfaith.study.statistics.bootstrap_mean`), ``attention`` (the tests of the attention itself),
  ``comparisons`` (per metric with a better direction, the methods ranked with intervals and compared in pairs:
  :func:`~attnfaith.study.statistics.compare_methods`), every part's :class:`~attnfaith.study.registry.Table`, and
  ``verdicts`` (per method, the parts' verdict clauses);
* :func:`render_markdown`: ``report.md``;
* :func:`summary_table`: the method × metric table alone, as markdown (what ``attnfaith demo`` prints).
"""

from __future__ import annotations

from typing import Any, Mapping

from attnfaith.study import registry
from attnfaith.study.statistics import (
    ALPHA, FEW, LEVEL, N_BOOT, N_PERM, bootstrap_mean, cell, compare_methods, few, p_text, pair_of,
)

__all__ = ["summarise", "comparisons", "render_markdown", "summary_table", "ranking_section", "truncation_sentence"]


def _methods_of(run: Mapping[str, Any]) -> list[str]:
    skipped = run.get("skipped", {})
    return [m for m in run["config"]["methods"] if m not in skipped]


def comparisons(run: Mapping[str, Any], seed: int,
                table: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Per per-method metric with a better direction and at least two methods with values:
    :func:`~attnfaith.study.statistics.compare_methods` of the methods (in the run's order) on it (``table``: the
    summary's method × metric bootstrap means, reused)."""
    out: dict[str, Any] = {}
    for metric in registry.metrics(per_method=True):
        if not metric.better:  # without a direction no method is better than another
            continue
        columns = {m: metric.values(run, m) for m in _methods_of(run)}
        columns = {m: v for m, v in columns.items() if any(x is not None for x in v)}
        if len(columns) >= 2:
            means = {m: table[m][metric.key] for m in columns if metric.key in (table or {}).get(m, {})}
            out[metric.key] = compare_methods(columns, metric.better, seed=seed, means=means)
    return out


def summarise(run: Mapping[str, Any]) -> dict[str, Any]:
    """The report's numbers (see the module docstring); bootstrap and permutation seed: the run's seed."""
    seed = int(run.get("seed", 0))
    examples = run["examples"]
    parts = registry.report_parts()
    table: dict[str, dict[str, Any]] = {}
    for m in _methods_of(run):
        row = {}
        for metric in registry.metrics(per_method=True):
            vals = metric.values(run, m)
            if any(v is not None for v in vals):
                row[metric.key] = bootstrap_mean(vals, seed=seed)
        table[m] = row
    attention: dict[str, Any] = {}
    for metric in registry.metrics(per_method=False):
        vals = metric.values(run)
        if any(v is not None for v in vals):
            attention[metric.key] = bootstrap_mean(vals, seed=seed)
    accuracy = None
    if examples and all(ex.get("label") is not None for ex in examples):
        accuracy = bootstrap_mean([float(ex["correct"]) for ex in examples], seed=seed)
    summary: dict[str, Any] = {"n_examples": len(examples), "accuracy": accuracy}
    for part in parts:
        for stat in part.statistics:
            summary[stat.key] = stat.compute(run, seed)
    summary["methods"] = table
    summary["attention"] = attention
    summary["comparisons"] = compared = comparisons(run, seed, table)
    for part in parts:
        for t in part.tables:
            summary[t.key] = t.compute(run)
    verdicts: dict[str, str] = {}
    for m in table:
        verdict = registry.Verdict(run=run, table=table, attention=attention, method=m, seed=seed,
                                   comparisons=compared)
        clauses = [c for part in parts if part.verdict is not None for c in part.verdict(verdict)]
        verdicts[m] = "; ".join(clauses) + "." if clauses else "no evaluator produced a number for this method."
    summary["verdicts"] = verdicts
    return summary


def summary_table(run: Mapping[str, Any]) -> str:
    """The method × metric table (means and 95 % bootstrap intervals) as markdown; only columns with numbers."""
    summary = run["summary"]
    methods = [m for m in _methods_of(run) if m in summary["methods"]]
    cols = [c for c in registry.metrics(per_method=True) if any(c.key in summary["methods"][m] for m in methods)]
    if not cols:
        return ("(no per-method metric in this run: the method × metric table needs the kendall or erasure "
                "evaluator, or a known rationale)")
    head = ["method"] + [c.header for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for m in methods:
        row = summary["methods"][m]
        cells = [registry.method_label(m)] + [cell(row.get(c.key), pct=c.percent) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    if any(few((summary["methods"][m].get(c.key) or {}).get("n")) for m in methods for c in cols):
        lines += ["", f"(n=…): the cell rests on fewer than {FEW} examples (e.g. only those whose decision flips); "
                      "read it with care."]
    return "\n".join(lines)


def _pair_cell(pair: Mapping[str, Any], percent: bool) -> str:
    """A paired comparison as ``"Δ mean [lo, hi], Holm p"`` (percentage points with ``percent``)."""
    diff = cell(pair, pct=percent)
    if percent and diff != "–":
        diff = diff.replace("%", " pp", 1)
    return f"{diff}, {p_text(pair.get('p_holm'), 'Holm p')}"


def ranking_section(run: Mapping[str, Any]) -> list[str]:
    """``report.md``'s ranking of the methods: per metric, the methods best first with the interval of the mean
    and of the rank, the paired difference with the next one, and whom each beats after Holm's correction."""
    compared = run["summary"].get("comparisons") or {}
    if not compared:
        return []
    lines = ["## Ranking of the methods (paired comparisons)", "",
             f"Per metric, methods best first. Rank interval: {LEVEL:.0%} bootstrap interval of the rank, resampling "
             f"whole examples ({N_BOOT} resamples). Paired differences are over the examples where both methods have "
             f"a value: mean difference with its {LEVEL:.0%} paired BCa bootstrap interval and a paired permutation "
             f"test ({N_PERM} sign flips), Holm-corrected over the pairs of each metric; \"beats\" lists the "
             f"methods it is better than at Holm p ≤ {ALPHA}. Where a metric is undefined for some examples (the "
             "fraction removed when the decision never flips), a pair's difference is over fewer examples than the "
             "means, and may order two methods otherwise.", ""]
    declared = {m.key: m for m in registry.metrics(per_method=True)}
    short = registry.method_label
    for key, comp in compared.items():
        metric = declared.get(key)
        if metric is None:
            continue
        lines += [f"**{metric.header}** ({comp['better']} is better)", "",
                  f"| rank | method | mean [{LEVEL:.0%} CI] | rank interval | vs the next: paired Δ [{LEVEL:.0%} CI], "
                  "Holm p | beats |", "|---|---|---|---|---|---|"]
        ranking = comp["ranking"]
        for i, r in enumerate(ranking):
            m = r["method"]
            nxt = ""
            if i + 1 < len(ranking):
                other = ranking[i + 1]["method"]
                pair = pair_of(comp, m, other)
                if pair is not None and pair.get("mean") is not None:
                    nxt = f"vs {short(other)}: {_pair_cell(pair, metric.percent)}"
            beats = [short(p["b"] if p["a"] == m else p["a"]) for p in comp["pairs"]
                     if p["better"] == m]
            rank = str(r["rank_lo"]) if r["rank_lo"] == r["rank_hi"] else f"{r['rank_lo']}–{r['rank_hi']}"
            lines.append(f"| {r['rank']} | {short(m)} | {cell(r, pct=metric.percent)} | {rank} | {nxt} | "
                         f"{', '.join(beats) or '–'} |")
        lines.append("")
    return lines


def truncation_sentence(n_truncated: int, n_texts: int, max_length: int) -> str:
    """The sentence that says how many texts were cut to ``max_length`` tokens (report, notes and CLI warning)."""
    return (f"{n_truncated} of {n_texts} texts are longer than --max-length {max_length} tokens and were truncated "
            "to it: their later tokens are not explained.")


def _attention_section(run: Mapping[str, Any], parts: list[registry.ReportPart]) -> list[str]:
    summary = run["summary"]
    att = summary.get("attention") or {}
    if not att:
        return []
    declared = {m.key: m for m in registry.metrics(per_method=False)}
    lines = [f"## Tests of the attention itself (layer {run['config']['layer']})", "",
             "| test | mean [95% CI] | n | what it is |", "|---|---|---|---|"]
    for key, b in att.items():
        metric = declared.get(key)
        if metric is not None:
            lines.append(f"| {metric.header} | {cell(b, pct=metric.percent, digits=3)} | {b['n']} | "
                         f"{metric.description} |")
    for part in parts:
        for stat in part.statistics:
            sentence = stat.sentence(summary) if stat.sentence is not None else None
            if sentence:
                lines += ["", sentence]
    return lines + [""]


def _configuration(run: Mapping[str, Any]) -> list[str]:
    lines = ["## Configuration", "", "```"]
    lines += [f"{k}: {v}" for k, v in run["config"].items()]
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
    return lines + ["```", ""]


def render_markdown(run: Mapping[str, Any]) -> str:
    """``report.md`` for a run."""
    summary = run["summary"]
    cfg = run["config"]
    model = run["model"]
    data = run.get("data", {})
    parts = registry.report_parts()
    title = run.get("title") or f"faithfulness of {model.get('source') or model.get('class')}"
    lines = [f"# attnfaith report: {title}", ""]
    desc = [f"**Model** `{model.get('source') or model.get('name_or_path') or model['class']}` "
            f"({model['class']}, {model['parameters']:,} parameters)"]
    if data.get("path"):
        desc.append(f"**data** `{data['path']}`" + (f" (split {data['split']})" if data.get("split") else ""))
    desc.append(f"**{summary['n_examples']} examples**")
    if summary.get("accuracy"):
        desc.append(f"accuracy {cell(summary['accuracy'], pct=True)}")
    desc.append(f"attention layer {cfg['layer']}, seed {cfg['seed']}")
    lines += [", ".join(desc) + ".", ""]
    if data.get("n_truncated"):
        lines += [f"**Note:** {truncation_sentence(data['n_truncated'], data['n_examples'], cfg['max_length'])}", ""]
    lines += [f"Intervals are {LEVEL:.0%} BCa bootstrap intervals of the mean over examples (scipy.stats.bootstrap, "
              f"{N_BOOT} resamples, seed {cfg['seed']}). Definitions: `docs/metrics.md`.", ""]

    lines += ["## Which explanation is faithful?", "", summary_table(run), ""]
    lines += ["↓ lower is more faithful, ↑ higher is more faithful. Kendall τ measures agreement with a reference "
              "importance, not faithfulness itself.", ""]
    lines += [f"- **{registry.method_label(m)}**: {v}" for m, v in summary["verdicts"].items()] + [""]
    if run.get("skipped"):
        lines += ["Not run on this model:", ""] + [f"- `{k}`: {v}" for k, v in run["skipped"].items()] + [""]
    lines += ranking_section(run)

    lines += _attention_section(run, parts)
    for part in parts:
        for t in part.tables:
            data_t = summary.get(t.key)
            if data_t:
                lines += t.render(run, data_t)

    figs = run.get("figures") or {}
    if figs:
        lines += ["## Figures", ""]
        for info in figs.values():
            lines += [f"**{info['title']}**", "", f"![{info['title']}]({info['path']})", "", info["caption"], ""]

    lines += _configuration(run)
    if run.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in run["notes"]] + [""]
    lines.append("Every per-example number is in `results.json`.")
    return "\n".join(lines) + "\n"
