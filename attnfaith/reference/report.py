"""The replication recipe's ``report.md``, written from the JSON-clean ``results.json`` dictionary
(:func:`write_report`), and Jain & Wallace's Table 2 in their layout (:func:`table2_markdown`, with the published SST
numbers :data:`PUBLISHED_SST`).

The report has, per explanation, JW's Table 2 (Kendall τ-b per predicted class: mean ± std (share with p ≤ 0.05)),
JW §4.2's permutation bins, Serrano & Smith §4's single-weight erasure (with the 2×2 flip table); per erasure level SS
§5's comparison of the rankings; uniform attention at inference; for the reference models Wiegreffe & Pinter's
uniform-training baseline and seed variance; SS's qualitative findings checked on the numbers; and the timings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from attnfaith.results import fmt_number, markdown_table

__all__ = ["PUBLISHED_SST", "table2_rows", "table2_cell", "table2_markdown", "write_report"]

#: Jain & Wallace (2019), Table 2, SST: Kendall τ mean (± std) and share with p ≤ 0.05, per predicted class
PUBLISHED_SST = {
    "bilstm": {
        "gradient": {0: {"mean": 0.34, "std": 0.21, "sig_frac": 0.48}, 1: {"mean": 0.36, "std": 0.21, "sig_frac": 0.49}},
        "loo": {0: {"mean": 0.27, "std": 0.19, "sig_frac": 0.33}, 1: {"mean": 0.32, "std": 0.19, "sig_frac": 0.40}},
        "test_f1": 0.78,
    },
    "average": {
        "gradient": {0: {"mean": 0.61, "std": None, "sig_frac": 0.87}, 1: {"mean": 0.60, "std": None, "sig_frac": 0.83}},
        "loo": {0: {"mean": 0.61, "std": None, "sig_frac": 0.87}, 1: {"mean": 0.64, "std": None, "sig_frac": 0.89}},
    },
}


def table2_rows(summary: dict[Any, dict[str, float]]) -> list[dict[str, Any]]:
    """Jain & Wallace's Table 2 rows from :meth:`KendallTauResult.summary`: one per predicted class, then ``all``."""
    rows = []
    keys = sorted([k for k in summary if str(k) != "all"], key=lambda k: int(k)) + [k for k in summary if str(k) == "all"]
    for k in keys:
        s = summary[k]
        rows.append({"class": str(k), "mean": s["mean"], "std": s["std"], "sig_frac": s["sig_frac"], "n": s["n"]})
    return rows


def table2_cell(s: dict[str, Any]) -> str:
    """``0.34 ± 0.21 (0.48)``: mean ± std (share with p ≤ 0.05), JW's layout."""
    std = "" if s.get("std") is None else f" ± {fmt_number(s['std'], 2)}"
    return f"{fmt_number(s['mean'], 2)}{std} ({fmt_number(s['sig_frac'], 2)})"


def table2_markdown(gradient: dict, loo: dict, class_names: Sequence[str] | None = None,
                    published: dict | None = None, name: str = "attn") -> str:
    """Jain & Wallace's Table 2 for one explanation: rows per predicted class, columns τ vs gradient and vs
    leave-one-out (``mean ± std (sig. frac.)``), the number of instances and, optionally, the published values."""
    g = {r["class"]: r for r in table2_rows(gradient)}
    l = {r["class"]: r for r in table2_rows(loo)}
    head = f"| predicted class | τ({name}, gradient) | τ({name}, leave-one-out) | n |"
    sep = "|---|---|---|---|"
    if published:
        head = head[:-1] + " published τ(attn, gradient) | published τ(attn, LOO) |"
        sep += "---|---|"
    lines = [head, sep]
    for k in g:
        name = k
        if class_names is not None and k != "all" and int(k) < len(class_names):
            name = f"{k} ({class_names[int(k)]})"
        row = f"| {name} | {table2_cell(g[k])} | {table2_cell(l.get(k, g[k]))} | {g[k]['n']} |"
        if published:
            pg = published.get("gradient", {}).get(int(k)) if k != "all" else None
            pl = published.get("loo", {}).get(int(k)) if k != "all" else None
            row += f" {table2_cell(pg) if pg else '–'} | {table2_cell(pl) if pl else '–'} |"
        lines.append(row)
    return "\n".join(lines)


def _bins_markdown(rows: list[dict[str, Any]], what: str, by: str = "attention") -> str:
    """A :func:`attnfaith.metrics.bin_quartiles` list as a table: per bin n, median, IQR and mean of ``what``."""
    return markdown_table(
        [f"max {by}", "n", f"median {what}", "IQR", f"mean {what}"],
        [[r["bin"], str(r["n"]), fmt_number(r["median"], 4),
          "–" if not r["n"] else f"{fmt_number(r['q1'], 4)}–{fmt_number(r['q3'], 4)}", fmt_number(r["mean"], 4)]
         for r in rows])


def _layer_words(r: dict[str, Any], noun: str = "attention layer") -> str:
    layer = r["config"].get("layer", -1)
    return f"the last {noun}" if layer == -1 else f"{noun} {layer}"


def _figure(r: dict[str, Any], alt: str, key: str) -> str:
    return f"![{alt}]({r['figures'].get(key, '')})"


def _header(r: dict[str, Any]) -> list[str]:
    cfg, m, ev = r["config"], r["model"], r["evaluation"]
    lines = [f"# Faithfulness replication: {cfg['encoder']} on {Path(cfg['data']).name}", ""]
    if r.get("command"):
        lines += ["Command:", "", "```", r["command"], "```", ""]
    return lines + [
        f"Started {r['started']}, finished {r.get('finished', '?')}; torch {r['environment']['torch']}, "
        f"{r['environment']['threads']} thread(s), device {r['environment']['device']}.",
        "",
        "## Data and model",
        "",
        f"- splits: train {r['data']['sizes']['train']}, dev {r['data']['sizes']['dev']}, test "
        f"{r['data']['sizes']['test']} ({'; '.join(r['data']['notes'])})",
        f"- encoder `{m['encoder']}`, {m['epochs']} epoch(s) at most; best epoch {m['train']['best_epoch']} by dev "
        f"{m['train']['select_by']} ({fmt_number(m['train']['best_dev_metric'])}); training took "
        f"{m['train']['train_seconds']} s" + (f"; vocabulary {m['vocab_size']} words" if m.get("vocab_size") else ""),
        f"- initial word vectors: {m['vectors'] if m.get('vectors') else 'random N(0, 1) (nn.Embedding default)'}"
        if m.get("vocab_size") else "- pretrained transformer",
        f"- gradient importance with attention detached: {m['gradient_detach_attention']}",
        "",
        markdown_table(["split", "accuracy", "macro F1", "ROC-AUC"],
                       [[split, m[split]["accuracy"], m[split]["f1"], m[split]["auc"]] for split in ("dev", "test")]),
        "",
        f"Faithfulness tests on {ev['n']} of {ev['of']} test examples.",
        "",
    ]


def _explanation(r: dict[str, Any], name: str, e: dict[str, Any]) -> list[str]:
    k, s, safe = e["kendall"], e["single_weight"]["summary"], name.replace(" ", "_")
    layer = _layer_words(r)
    return [
        f"## Explanation: {name}",
        "",
        "### Jain & Wallace, Table 2: Kendall τ-b per predicted class",
        "",
        "mean ± std over instances (share of instances with p ≤ 0.05); τ over the real tokens only.",
        "",
        table2_markdown(k["gradient"]["summary"], k["loo"]["summary"], r["data"].get("label_names"),
                        name="attn" if name == "attention" else name),
        "",
        _figure(r, "Kendall τ", f"kendall_{safe}"),
        "",
        "### Jain & Wallace §4.2: permuted attention",
        "",
        f"Median ΔTVD over {r['evaluation']['permutation']['n_permutations']} permutations of {layer}'s "
        f"weights over the real tokens, binned by the maximum {name} weight.",
        "",
        _bins_markdown(e["permutation"]["bins"], "ΔTVD", by=name),
        "",
        _figure(r, "permutation", f"permutation_{safe}"),
        "",
        "### Serrano & Smith §4: single-weight erasure",
        "",
        f"Zero the top-ranked item's weight ({name}) in {layer}, or a random other item's, and "
        "renormalise. JS in nats of the output distribution.",
        "",
        markdown_table(
            ["mean JS (top)", "mean JS (random)", "mean ΔJS", "share ΔJS > 0", "top flips", "random flips", "compared"],
            [[fmt_number(s["mean_js_top"], 4), fmt_number(s["mean_js_random"], 4), fmt_number(s["mean_delta_js"], 4),
              s["share_delta_js_positive"], s["flip_top"], s["flip_random"], str(s["n_compared"])]]),
        "",
        markdown_table(["removing i* flips? \\ removing random flips?", "yes", "no"],
                       [["yes", str(s["both_flip"]), str(s["only_top_flips"])],
                        ["no", str(s["only_random_flips"]), str(s["neither_flips"])]]),
        "",
        _figure(r, "ΔJS", f"single_weight_{safe}"),
        "",
    ]


def _erasure(r: dict[str, Any], lv: str, er: dict[str, Any]) -> list[str]:
    layer = _layer_words(r)
    how = (f"Items are zeroed in {layer} (every head and query row, rows renormalised: Serrano & "
           "Smith's intermediate-representation erasure)" if lv == "attention" else
           "Tokens are deleted from the input (the sequence closes up, as Jain & Wallace's leave-one-out)")
    rows = [[n, x["summary"]["mean_fraction_removed"], x["summary"]["never_flipped"],
             x.get("flip_only_when_all_removed"), x["mean_fraction_common"], x["median_fraction_common"],
             x["summary"]["mean_aopc"]] for n, x in er["rankings"].items()]
    return [
        f"## Serrano & Smith §5: decision-flip erasure ({lv} level), rankings compared",
        "",
        f"{how}, in descending order of each ranking, until the decision changes. `gradient` is ∂p/∂α and "
        f"`attention_x_gradient` α·∂p/∂α of {_layer_words(r, 'layer')} (SS), `leave_one_out` "
        f"JW's deletion importance, `random` the mean of {r['config']['n_random']} random orders. *Fraction* = items "
        "removed / items; never-flipped instances are left out of the mean (SS) and counted separately. The *common* "
        f"columns average over the {er['n_common']} instances where every ranking flipped the decision.",
        "",
        markdown_table(["ranking", "mean fraction removed (flipped)", "never flipped",
                        "flips only with every item removed", "mean fraction (common)", "median fraction (common)",
                        "mean AOPC"], rows),
        "",
        _figure(r, "erasure", "erasure_fractions" if lv == "attention" else f"erasure_fractions_{lv}"),
        "",
    ]


def _uniform_inference(r: dict[str, Any]) -> list[str]:
    u = r["evaluation"]["uniform_inference"]["summary"]
    return [
        "## Uniform attention at inference",
        "",
        "Every attention layer replaced by the uniform distribution over the visible keys, without retraining.",
        "",
        markdown_table(["mean TVD", "mean JSD", "decision flips", "accuracy", "accuracy (uniform)", "n"],
                       [[fmt_number(u["mean_tvd"], 4), fmt_number(u["mean_jsd"], 4), u["flip_rate"], u["accuracy"],
                         u["accuracy_uniform"], str(u["n_examples"])]]),
        "",
    ]


def _wiegreffe_pinter(r: dict[str, Any], wp: dict[str, Any]) -> list[str]:
    lines = ["## Wiegreffe & Pinter", ""]
    if "uniform_training" in wp:
        ut = wp["uniform_training"]
        lines += [
            "### Uniform-attention training baseline",
            "",
            "The same model trained with attention frozen to uniform over the real tokens.",
            "",
            markdown_table(["attention", "dev F1", "test F1", "test accuracy"],
                           [[kind, ut[key]["dev"]["f1"], ut[key]["test"]["f1"], ut[key]["test"]["accuracy"]]
                            for kind, key in (("learned", "learned"), ("uniform (frozen)", "uniform"))]),
            "",
        ]
    if "seed_variance" in wp:
        sv = wp["seed_variance"]
        accs = ", ".join(f"{x['seed']}: {fmt_number(x['test']['accuracy'])}" for x in sv["runs"])
        base_k = r["evaluation"]["explanations"]["attention"]["kendall"]
        seed_rows = [[f"{sv['base_seed']} (base)", r["model"]["test"]["accuracy"],
                      table2_cell(base_k["gradient"]["summary"]["all"]), table2_cell(base_k["loo"]["summary"]["all"])]]
        seed_rows += [[str(x["seed"]), x["test"]["accuracy"], table2_cell(x["kendall"]["gradient"]["all"]),
                       table2_cell(x["kendall"]["loo"]["all"])] for x in sv["runs"] if "kendall" in x]
        lines += [
            "### Seed variance",
            "",
            f"Base seed {sv['base_seed']} against WP seeds {sv['seeds']} (test accuracy {accs}). Per test instance: "
            "median over seeds of JSD(α_base, α_seed) in nats (upper bound ln 2 ≈ 0.693) and mean output "
            f"difference. Mean of the per-instance median JSD {fmt_number(sv['jsd_median_mean'], 4)}, median "
            f"{fmt_number(sv['jsd_median_median'], 4)}; mean output difference {fmt_number(sv['output_diff_mean'], 4)}.",
            "",
            _bins_markdown(sv["bins"], "JSD"),
            "",
            _figure(r, "seed variance", "seed_variance"),
            "",
            "Jain & Wallace's τ (all instances) for each seed's model: how much Table 2 moves with the seed.",
            "",
            markdown_table(["seed", "test accuracy", "τ(attn, gradient)", "τ(attn, leave-one-out)"], seed_rows),
            "",
        ]
    return lines


def _findings(r: dict[str, Any]) -> list[str]:
    fd, ev = r["findings"], r["evaluation"]
    lines = ["## Serrano & Smith's qualitative findings, checked", ""]
    for name in ev["explanations"]:
        x = fd[f"{name}: top item flips"]
        lines.append(
            f"- Removing the single top-{name} item flips the decision in {fmt_number(x['flip_top'])} of the instances "
            f"(a random other item: {fmt_number(x['flip_random'])}): "
            + ("**rarely**, as SS found." if x["rarely_flips"] else "**not rare** (≥ 10 %), unlike SS.")
            + f" ΔJS > 0 (the top item matters more than a random one) in {fmt_number(x['share_delta_js_positive'])}."
        )
    for lv in ev["erasure"]:
        x = fd[f"erasure_{lv}"]
        lines.append(
            f"- {lv.capitalize()}-level erasure, rankings by the fraction removed before a flip (fewest first, on the "
            f"{x['n_common']} instances where all flipped): " + " < ".join(x["ranking_order_common"])
            + ". Random needs the most: " + ("**yes**." if x["random_needs_most"] else "**no**.")
        )
        lines.append(
            "  On each ranking's own flipped instances: " + " < ".join(x["ranking_order_all_flipped"])
            + ". Random needs the most: " + ("**yes**." if x["random_needs_most_all_flipped"] else "**no**."))
    return lines


def write_report(r: dict[str, Any]) -> str:
    """``report.md`` from the (JSON-clean) results dictionary (the sections of the module docstring)."""
    ev = r["evaluation"]
    lines = _header(r)
    for name, e in ev["explanations"].items():
        lines += _explanation(r, name, e)
    for lv, er in ev["erasure"].items():
        lines += _erasure(r, lv, er)
    lines += _uniform_inference(r)
    if r.get("wiegreffe_pinter"):
        lines += _wiegreffe_pinter(r, r["wiegreffe_pinter"])
    lines += _findings(r)
    lines += ["", "## Timings (s)", "", markdown_table(["stage", "seconds"],
                                                       [[k, str(v)] for k, v in r["timings_s"].items()]), ""]
    return "\n".join(lines)
