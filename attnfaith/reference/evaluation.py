"""The replication recipe's evaluation: the three papers' tests on the test split of a trained model.

:func:`evaluate_test_split` runs, on the evaluated test rows (:func:`eval_indices`: the first ``limit`` rows of a
seeded shuffle, sorted by length, in chunks of ``eval_batch_size``), for every explanation (:func:`explanations`:
the reference models' attention; for a transformer the attention of layer ``cfg.layer`` ([CLS] row, mean over heads)
and attention rollout):

* :class:`attnfaith.evaluators.KendallTau` against gradient importance (:class:`attnfaith.attr.GradientImportance`,
  attention detached for the reference models as Jain & Wallace) and against leave-one-out by deletion
  (:class:`attnfaith.attr.LeaveOneOut`): Jain & Wallace's Table 2 (per predicted class: mean ± std of τ and the
  share with p ≤ 0.05);
* :class:`attnfaith.evaluators.PermutationTVD` (JW §4.2): median ΔTVD over permutations of layer ``cfg.layer``,
  binned by the maximum weight of the explanation (:func:`attnfaith.metrics.bin_quartiles`);
* :class:`attnfaith.evaluators.SingleWeightErasure` (Serrano & Smith §4): ΔJS and the 2×2 flip table;
* :class:`attnfaith.evaluators.ErasureFlip` (SS §5) for the rankings: the explanation(s), ``gradient`` (∂p/∂α),
  ``attention_x_gradient``, leave-one-out and ``random``, at the levels ``cfg.resolved_erasure_levels``
  (:func:`erasure_section` compares them on the instances where every ranking flipped);
* :class:`attnfaith.evaluators.UniformAttention` (Wiegreffe & Pinter: uniform attention at inference).

Seeds: every evaluator gets ``seed=cfg.seed`` and, as ``example_ids``, the index of each row in the test split, so a
test row's random draws (permutations, random item, random orders) are the same whatever chunk, ``limit`` or
``eval_batch_size`` it is evaluated with (:mod:`attnfaith.seeding`).

:func:`serrano_smith_findings` checks SS's qualitative claims on the numbers; :func:`kendall_summaries` is Table 2
alone (the other seeds' models, the slow test).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from attnfaith.attr import AttentionAttribution, AttentionRollout, GradientImportance, LeaveOneOut
from attnfaith.evaluators import (
    ErasureFlip,
    ErasureResult,
    KendallTau,
    KendallTauResult,
    PermutationTVD,
    PermutationTVDResult,
    SingleWeightErasure,
    SingleWeightResult,
    UniformAttention,
    UniformAttentionResult,
)
from attnfaith.metrics import bin_quartiles, max_over_items
from attnfaith.reference.config import ReplicationConfig
from attnfaith.reference.data import TextDataset
from attnfaith.reference.trained_model import TrainedModel
from attnfaith.results import pad_cat

__all__ = [
    "ExplanationResults",
    "TestSplitResults",
    "explanations",
    "eval_indices",
    "eval_batch_size",
    "evaluate_test_split",
    "evaluation_section",
    "erasure_section",
    "serrano_smith_findings",
    "kendall_summaries",
]


@dataclass
class ExplanationResults:
    """One explanation's results over the evaluated rows: τ against gradient and leave-one-out, single-weight
    erasure, and the explanation's maximum weight per example (over the items)."""

    kendall_gradient: KendallTauResult
    kendall_loo: KendallTauResult
    single_weight: SingleWeightResult
    max_attention: torch.Tensor


@dataclass
class TestSplitResults:
    """Every evaluator's result over the evaluated rows (chunks joined): per explanation, permutation, uniform
    attention and, per erasure level, one :class:`~attnfaith.evaluators.ErasureResult` per ranking."""

    explanations: dict[str, ExplanationResults]
    permutation: PermutationTVDResult
    uniform: UniformAttentionResult
    erasure: dict[str, dict[str, ErasureResult]]
    stage_seconds: dict[str, float] = field(default_factory=dict)


def explanations(tm: TrainedModel, layer: int = -1) -> dict[str, Any]:
    """name → attribution: the reference models' attention; for a transformer the attention of ``layer`` ([CLS]
    row, mean over heads) and attention rollout ([CLS] row, mean over heads)."""
    if tm.vocab is not None:
        return {"attention": AttentionAttribution(tm.model)}
    return {
        "attention": AttentionAttribution(tm.model, layer=layer, heads="mean", query="cls"),
        "rollout": AttentionRollout(tm.model, head_fusion="mean", query="cls"),
    }


def eval_indices(cfg: ReplicationConfig, tm: TrainedModel, test: TextDataset) -> list[int]:
    """The test rows evaluated: a seeded shuffle's first ``limit`` rows, then sorted by length (so that chunks pad
    little); the order of evaluation (and of every per-example array in results.json)."""
    idx = list(range(len(test)))
    if cfg.limit is not None and cfg.limit < len(idx):
        random.Random(cfg.seed + 3).shuffle(idx)
        idx = idx[: cfg.limit]
    lengths = {i: tm.n_tokens(test.texts[i]) for i in idx}
    return sorted(idx, key=lambda i: (lengths[i], i))


def eval_batch_size(cfg: ReplicationConfig, tm: TrainedModel) -> int:
    """Rows per evaluation chunk: ``cfg.eval_batch_size``, or 128 for a reference model and 32 for a transformer."""
    return cfg.eval_batch_size or (128 if tm.vocab is not None else 32)


def evaluate_test_split(cfg: ReplicationConfig, tm: TrainedModel, test: TextDataset, rows: Sequence[int],
                        log: Callable[[str], None] = print) -> TestSplitResults:
    """Every test of the module docstring on ``test`` rows ``rows`` (in that order), chunk by chunk."""
    model, mepb, layer = tm.model, cfg.max_examples_per_batch, cfg.layer
    bs = eval_batch_size(cfg, tm)
    chunks = [list(rows[s : s + bs]) for s in range(0, len(rows), bs)]
    expl = explanations(tm, layer)
    levels = cfg.resolved_erasure_levels
    grad_attr = GradientImportance(model, detach_attention=cfg.resolved_detach_attention)
    loo_attr = LeaveOneOut(model, mode="delete", max_examples_per_batch=mepb)
    permutation = PermutationTVD(model, layer=layer, n_permutations=cfg.n_permutations, seed=cfg.seed,
                                 max_examples_per_batch=mepb)
    single = SingleWeightErasure(model, layer=layer, seed=cfg.seed, max_examples_per_batch=mepb)
    erasers = {lv: ErasureFlip(model, level=lv, layer=layer, erase="delete", n_random=cfg.n_random, seed=cfg.seed,
                               max_examples_per_batch=mepb) for lv in levels}
    uniform = UniformAttention(model, layers="all", max_examples_per_batch=mepb)

    parts: dict[str, dict[str, list]] = {n: {"kt_grad": [], "kt_loo": [], "swe": [], "scores": []} for n in expl}
    erasure_parts: dict[str, list] = {lv: [] for lv in levels}
    perm_parts, uni_parts = [], []
    stage_t = {k: 0.0 for k in ("gradient", "loo", "kendall", "permutation", "single", "erasure", "uniform")}

    def clock(key: str, fn: Callable[[], Any]) -> Any:
        t = time.time()
        r = fn()
        stage_t[key] += time.time() - t
        return r

    for ci, chunk in enumerate(chunks):
        labels = torch.tensor([test.labels[i] for i in chunk])
        ids = [int(i) for i in chunk]  # the rows' indices in the test split: their random draws' example ids
        inputs, afa = tm.encode([test.texts[i] for i in chunk])
        grad = clock("gradient", lambda: grad_attr.attribute(inputs, additional_forward_args=afa))
        loo = clock("loo", lambda: loo_attr.attribute(inputs, additional_forward_args=afa))
        rankings: dict[str, Any] = {}
        for name, attr in expl.items():
            scores = attr.attribute(inputs, additional_forward_args=afa)
            rankings[name] = scores
            p = parts[name]
            p["scores"].append(scores)
            for key, ref in (("kt_grad", grad), ("kt_loo", loo)):
                p[key].append(clock("kendall", lambda: KendallTau(model, reference=ref).evaluate(
                    inputs, attributions=scores, additional_forward_args=afa)))
            p["swe"].append(clock("single", lambda: single.evaluate(
                inputs, attributions=scores, additional_forward_args=afa, example_ids=ids)))
        rankings.update({"gradient": "gradient", "attention_x_gradient": "attention_x_gradient",
                         "leave_one_out": loo, "random": "random"})
        for lv in levels:
            erasure_parts[lv].append(clock("erasure", lambda: erasers[lv].compare(
                inputs, rankings, additional_forward_args=afa, example_ids=ids)))
        perm_parts.append(clock("permutation", lambda: permutation.evaluate(inputs, additional_forward_args=afa,
                                                                            example_ids=ids)))
        uni_parts.append(clock("uniform", lambda: uniform.evaluate(
            inputs, labels=labels, additional_forward_args=afa)))
        done = sum(len(c) for c in chunks[: ci + 1])
        log(f"  evaluated {done}/{len(rows)} (" + ", ".join(f"{k} {v:.0f}s" for k, v in stage_t.items()) + ")")

    per_expl = {}
    for name, p in parts.items():
        kg = KendallTauResult.concat(p["kt_grad"])
        scores = pad_cat([s.detach().float().cpu() for s in p["scores"]], 0.0)
        per_expl[name] = ExplanationResults(kendall_gradient=kg, kendall_loo=KendallTauResult.concat(p["kt_loo"]),
                                            single_weight=SingleWeightResult.concat(p["swe"]),
                                            max_attention=max_over_items(scores, kg.items.cpu()))
    erasure = {lv: {n: ErasureResult.concat([c.results[n] for c in erasure_parts[lv]])
                    for n in erasure_parts[lv][0].results} for lv in levels}
    return TestSplitResults(explanations=per_expl, permutation=PermutationTVDResult.concat(perm_parts),
                            uniform=UniformAttentionResult.concat(uni_parts), erasure=erasure, stage_seconds=stage_t)


def evaluation_section(cfg: ReplicationConfig, res: TestSplitResults) -> dict[str, Any]:
    """The per-explanation, permutation, erasure and uniform parts of ``results.json``'s ``"evaluation"``."""
    perm = res.permutation
    section: dict[str, Any] = {"predicted": perm.predicted.tolist(), "explanations": {}}
    for name, e in res.explanations.items():
        kg, kl, swe, max_att = e.kendall_gradient, e.kendall_loo, e.single_weight, e.max_attention
        section["explanations"][name] = {
            "kendall": {
                "gradient": {"summary": kg.summary(), "tau": kg.tau, "pvalue": kg.pvalue},
                "loo": {"summary": kl.summary(), "tau": kl.tau, "pvalue": kl.pvalue},
            },
            "max_attention": max_att,
            "permutation": {
                "bins": bin_quartiles(perm.median, max_att),
                "bins_by_predicted_class": {
                    str(c): bin_quartiles(perm.median[perm.predicted == c], max_att[perm.predicted.cpu() == c])
                    for c in sorted(set(perm.predicted.tolist()))
                },
            },
            "single_weight": {"summary": swe.summary(), "delta_js": swe.delta_js, "js_top": swe.js_top,
                              "js_random": swe.js_random, "flip_top": swe.flip_top,
                              "flip_random": swe.flip_random, "flip_table": swe.flip_table},
        }
    section["permutation"] = {
        "layer": perm.layer, "n_permutations": cfg.n_permutations, "median_tvd": perm.median,
        "summary_by_own_max_attention": perm.summary(),
    }
    section["erasure"] = {lv: erasure_section(er, list(res.explanations)) for lv, er in res.erasure.items()}
    uni = res.uniform
    section["uniform_inference"] = {"summary": uni.summary(), "tvd": uni.tvd, "flipped": uni.flipped}
    return section


def erasure_section(erasure: dict[str, ErasureResult], explanation_names: Sequence[str]) -> dict[str, Any]:
    """Per ranking: the evaluator's summary, per-example fractions, the share of (example, order) pairs that flip
    only once every item is removed, and the mean and median fraction removed on the examples where every ranking
    flipped the decision (a common set of examples)."""
    names = list(erasure)
    frac = {n: erasure[n].fraction_removed.detach().double().cpu() for n in names}
    common = torch.ones_like(next(iter(frac.values())), dtype=torch.bool)
    for n in names:
        common &= torch.isfinite(frac[n])
    out: dict[str, Any] = {"rankings": {}, "n_common": int(common.sum()), "explanations": list(explanation_names)}
    for n in names:
        r = erasure[n]
        nr = r.n_removed_per_order.detach().double().cpu()
        n_items = r.n_items.detach().double().cpu()[:, None].expand_as(nr)
        out["rankings"][n] = {
            "summary": r.summary(),
            # flips that happen only once every item's weight is zeroed (the context vector is then 0 / the row
            # degenerate): a share of the (example, order) pairs
            "flip_only_when_all_removed": float((nr == n_items).double().mean()) if nr.numel() else math.nan,
            "flipped_share": float(r.flipped.double().mean()),
            "mean_fraction_common": float(frac[n][common].mean()) if common.any() else math.nan,
            "median_fraction_common": float(frac[n][common].median()) if common.any() else math.nan,
            "fraction_removed": frac[n],
        }
    return out


def serrano_smith_findings(evaluation: dict[str, Any]) -> dict[str, Any]:
    """Serrano & Smith's qualitative claims, checked on the numbers of a (JSON-clean or not) ``"evaluation"``
    section: per explanation whether removing its top item rarely (< 10 %) flips the decision, and per erasure
    level the order of the rankings by the mean fraction removed before a flip (on the instances where every
    ranking flipped, and on each ranking's own flipped instances) and whether random needs the most."""
    findings: dict[str, Any] = {}
    for name, e in evaluation["explanations"].items():
        s = e["single_weight"]["summary"]
        findings[f"{name}: top item flips"] = {
            "flip_top": s["flip_top"], "flip_random": s["flip_random"],
            "rarely_flips": bool(s["flip_top"] is not None and s["flip_top"] < 0.1),
            "share_delta_js_positive": s["share_delta_js_positive"],
        }
    for lv, section in evaluation["erasure"].items():
        er = section["rankings"]

        def key(n: str, common: bool) -> float:
            v = er[n]["mean_fraction_common"] if common else er[n]["summary"]["mean_fraction_removed"]
            v = math.nan if v is None else float(v)
            return math.inf if not math.isfinite(v) else v

        common = sorted(er, key=lambda n: key(n, True))
        own = sorted(er, key=lambda n: key(n, False))
        findings[f"erasure_{lv}"] = {
            "n_common": section["n_common"],
            "ranking_order_common": common,
            "random_needs_most": bool(common and common[-1] == "random"),
            "ranking_order_all_flipped": own,
            "random_needs_most_all_flipped": bool(own and own[-1] == "random"),
        }
    return findings


def kendall_summaries(tm: TrainedModel, test: TextDataset, rows: Sequence[int] | None = None, batch_size: int = 128,
                      detach: bool = True, max_examples_per_batch: int | None = None,
                      layer: int = -1) -> dict[str, Any]:
    """Jain & Wallace's Table 2 only: ``{"gradient": summary, "loo": summary}`` (:meth:`KendallTauResult.summary`,
    per predicted class and ``"all"``) of the model's attention against gradient importance (attention detached when
    ``detach``) and against leave-one-out, on ``test`` rows ``rows`` (default all). Used for the other seeds' models
    (how much τ moves between training seeds) and by the slow replication test."""
    rows = list(range(len(test))) if rows is None else list(rows)
    model = tm.model
    parts: dict[str, list] = {"gradient": [], "loo": []}
    refs = {"gradient": GradientImportance(model, detach_attention=detach),
            "loo": LeaveOneOut(model, mode="delete", max_examples_per_batch=max_examples_per_batch)}
    attn = explanations(tm, layer)["attention"]
    for s in range(0, len(rows), batch_size):
        inputs, afa = tm.encode([test.texts[i] for i in rows[s : s + batch_size]])
        scores = attn.attribute(inputs, additional_forward_args=afa)
        for k, ref in refs.items():
            r = ref.attribute(inputs, additional_forward_args=afa)
            parts[k].append(KendallTau(model, reference=r).evaluate(inputs, attributions=scores,
                                                                    additional_forward_args=afa))
    return {k: KendallTauResult.concat(v).summary() for k, v in parts.items()}
