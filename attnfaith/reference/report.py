"""The replication recipe's ``report.md``, written from the JSON-clean ``results.json`` dictionary
(:func:`write_report`), and Jain & Wallace's Table 2 in their layout (:func:`table2_markdown`, with the published SST
numbers :data:`PUBLISHED_SST`).

The report has the data and the trained model; per explanation JW's Table 2 (Kendall τ-b per predicted class:
mean ± std (share with p ≤ 0.05, and its split into τ > 0 / τ < 0)) beside the published numbers; the study's
method × metric table; Serrano & Smith's qualitative findings checked on the numbers; for the reference models
Wiegreffe & Pinter's uniform-training baseline and seed variance; and the timings. Every test in full (permutation
bins, single-weight flip table, the rankings compared, uniform attention, the figures) is in the study's own report,
``evaluation/report.md`` (:mod:`attnfaith.study.report`), which the report links.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from attnfaith.results import fmt_number, markdown_table
from attnfaith.study.builtin.permutation import bins_markdown
from attnfaith.study.report import summary_table

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
        rows.append({"class": str(k), "mean": s["mean"], "std": s["std"], "sig_frac": s["sig_frac"],
                     "sig_pos_frac": s.get("sig_pos_frac"), "sig_neg_frac": s.get("sig_neg_frac"), "n": s["n"]})
    return rows


def table2_cell(s: dict[str, Any]) -> str:
    """``0.34 ± 0.21 (0.48)``: mean ± std (share with p ≤ 0.05), JW's layout; with the shares by sign when known:
    ``0.34 ± 0.21 (0.48: +0.47/−0.01)``."""
    std = "" if s.get("std") is None else f" ± {fmt_number(s['std'], 2)}"
    sign = ""
    if s.get("sig_pos_frac") is not None and s.get("sig_neg_frac") is not None:
        sign = f": +{fmt_number(s['sig_pos_frac'], 2)}/−{fmt_number(s['sig_neg_frac'], 2)}"
    return f"{fmt_number(s['mean'], 2)}{std} ({fmt_number(s['sig_frac'], 2)}{sign})"


def table2_markdown(gradient: dict, loo: dict, class_names: Sequence[str] | None = None,
                    published: dict | None = None, name: str = "attn") -> str:
    """Jain & Wallace's Table 2 for one explanation: rows per predicted class, columns τ vs gradient and vs
    leave-one-out (``mean ± std (sig. frac.)``), the number of instances and, optionally, the published values."""
    g = {r["class"]: r for r in table2_rows(gradient)}
    l = {r["class"]: r for r in table2_rows(loo)}
    head = f"| predicted class | τ({name}, gradient) | τ({name}, leave-one-out) | n |"
    sep = "|---|---|---|---|"
    if published:
        head += " published τ(attn, gradient) | published τ(attn, LOO) |"
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
        "Faithfulness tests (each in full, with its figures and per-example records, in its study's report):",
        "",
        *[f"- {', '.join(st['tests'])}: {st['n']} of {ev['of']} test examples "
          f"([{st['folder']}/report.md]({st['folder']}/report.md))" for st in ev["studies"]],
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
        base_k = r["evaluation"]["table2"].get("attention")
        seed_rows = [[f"{sv['base_seed']} (base)", r["model"]["test"]["accuracy"],
                      table2_cell(base_k["gradient"]["all"]) if base_k else "–",
                      table2_cell(base_k["loo"]["all"]) if base_k else "–"]]
        seed_rows += [[str(x["seed"]), x["test"]["accuracy"], table2_cell(x["kendall"]["gradient"]["all"]),
                       table2_cell(x["kendall"]["loo"]["all"])] for x in sv["runs"] if "kendall" in x]
        lines += [
            "### Seed variance",
            "",
            f"Base seed {sv['base_seed']} against WP seeds {sv['seeds']} (test accuracy {accs}). On all {sv['n']} test "
            "instances (not only the evaluated sample), per instance: "
            "median over seeds of JSD(α_base, α_seed) in nats (upper bound ln 2 ≈ 0.693) and mean output "
            f"difference. Mean of the per-instance median JSD {fmt_number(sv['jsd_median_mean'], 4)}, median "
            f"{fmt_number(sv['jsd_median_median'], 4)}; mean output difference {fmt_number(sv['output_diff_mean'], 4)}.",
            "",
            bins_markdown(sv["bins"], "JSD"),
            "",
            f"![seed variance]({r['figures'].get('seed_variance', '')})",
            "",
            "Jain & Wallace's τ (all instances of Table 2's sample, n = "
            f"{r['evaluation']['table2'].get('attention', {}).get('gradient', {}).get('all', {}).get('n', '?')}) for "
            "each seed's model: how much Table 2 moves with the seed.",
            "",
            markdown_table(["seed", "test accuracy", "τ(attn, gradient)", "τ(attn, leave-one-out)"], seed_rows),
            "",
        ]
    return lines


def _table2(r: dict[str, Any]) -> list[str]:
    ev, cfg = r["evaluation"], r["config"]
    published = PUBLISHED_SST.get(cfg["encoder"]) if "sst" in Path(cfg["data"]).name.lower() else None
    lines = []
    for name, t in ev["table2"].items():
        if "gradient" not in t or "loo" not in t:
            continue
        lines += [f"## Jain & Wallace, Table 2: Kendall τ-b of {name} per predicted class (n = {t['gradient']['all']['n']})",
                  "",
                  "mean ± std over instances (share of instances with p ≤ 0.05: τ > 0 / τ < 0); τ over the real "
                  "tokens only" + ("; published: Jain & Wallace's SST numbers." if published and name == "attention"
                                   else "."), "",
                  table2_markdown(t["gradient"], t["loo"], r["data"].get("label_names"),
                                  published=published if name == "attention" else None,
                                  name="attn" if name == "attention" else name), ""]
    return lines


def _findings(r: dict[str, Any]) -> list[str]:
    fd = r["findings"]
    lines = ["## Serrano & Smith's qualitative findings, checked", ""]
    x = fd.get("single_weight")
    if x:
        lines.append(
            f"- Removing the single top attention weight flips the decision in {fmt_number(x['flip_top'])} of the "
            f"instances (a random other one: {fmt_number(x['flip_random'])}): "
            + ("**rarely**, as SS found." if x["rarely_flips"] else "**not rare** (≥ 10 %), unlike SS.")
            + f" ΔJS > 0 (the top weight matters more than a random one) in {fmt_number(x['share_delta_js_positive'])}.")
    for key, x in fd.items():
        if not key.startswith("erasure_"):
            continue
        lines.append(
            f"- {key[len('erasure_'):].capitalize()}-level erasure, rankings by the fraction removed before a flip "
            f"(fewest first, on the {x['n_common']} instances where all flipped): " + " < ".join(x["ranking_order_common"])
            + ". Random needs the most: " + ("**yes**." if x["random_needs_most"] else "**no**."))
        lines.append(
            "  On each ranking's own flipped instances: " + " < ".join(x["ranking_order_all_flipped"])
            + ". Random needs the most: " + ("**yes**." if x["random_needs_most_all_flipped"] else "**no**."))
    return lines + [""]


def write_report(r: dict[str, Any], studies: dict[str, dict[str, Any]] | None = None) -> str:
    """``report.md`` from the (JSON-clean) results dictionary (the sections of the module docstring); ``studies``:
    each study's ``results.json`` by folder (for their method × metric tables)."""
    lines = _header(r) + _table2(r)
    for folder, study in (studies or {}).items():
        lines += [f"## Every method, every test of `{folder}` (n = {len(study['examples'])}; means and 95 % "
                  "bootstrap intervals)", "", summary_table(study), ""]
    lines += _findings(r)
    if r.get("wiegreffe_pinter"):
        lines += _wiegreffe_pinter(r, r["wiegreffe_pinter"])
    lines += ["## Timings (s)", "", markdown_table(["stage", "seconds"],
                                                   [[k, str(v)] for k, v in r["timings_s"].items()]), ""]
    return "\n".join(lines)
