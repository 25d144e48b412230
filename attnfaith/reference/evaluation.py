"""The replication recipe's evaluation: the three papers' tests on the test split of a trained model, run by the
study runner (:func:`attnfaith.study.run_evaluation`), like ``attnfaith evaluate``.

:func:`evaluate_test_split` runs, on the evaluated test rows (:func:`eval_indices`: the first ``limit`` rows of a
seeded shuffle, sorted by length, in chunks of :func:`eval_batch_size`), the study of :func:`study_config`:

* methods: the explanations (:func:`explanation_names`: the model's ``attention``, for a transformer of layer
  ``cfg.layer`` and also attention ``rollout``), and the rankings Serrano & Smith compare them with:
  ``attention_gradient`` (∂p/∂α), ``attention_x_gradient`` (α·∂p/∂α), Jain & Wallace's ``gradient`` importance
  (attention detached for the reference models, as JW) and leave-one-out (``loo``, by deletion), and ``random``;
* evaluators ``kendall`` (JW Table 2: τ of every method against ``gradient`` and ``loo``), ``permutation`` (JW §4.2,
  binned by the maximum attention weight), ``single`` (Serrano & Smith §4), ``erasure`` at the levels
  ``cfg.resolved_erasure_levels`` (SS §5, the rankings compared), ``uniform`` (Wiegreffe & Pinter: uniform attention
  at inference).

The study writes its own ``results.json`` (every per-example record), ``report.md`` and figures into
``OUT/evaluation/``; the recipe's report (:mod:`attnfaith.reference.report`) adds the papers' published numbers and
:func:`serrano_smith_findings`, read from the study's summary.

Seeds: the study gets ``seed=cfg.seed`` and, as ``example_ids``, the index of each row in the test split, so a test
row's random draws (permutations, random item, random orders) are the same whatever chunk, ``limit`` or
``eval_batch_size`` it is evaluated with (:mod:`attnfaith.seeding`).
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from attnfaith._text import VocabularyTokenizer
from attnfaith.reference.config import TESTS, ReplicationConfig
from attnfaith.reference.data import TextDataset
from attnfaith.reference.trained_model import TrainedModel
from attnfaith.study import EvaluationConfig, run_evaluation
from attnfaith.study.builtin.erasure import ranking_comparison
from attnfaith.study.builtin.kendall import jw_table

__all__ = [
    "EVALUATORS",
    "RANKINGS",
    "TEST_METHODS",
    "StudyPlan",
    "plan_studies",
    "explanation_names",
    "eval_indices",
    "eval_batch_size",
    "study_config",
    "evaluate_test_split",
    "table2",
    "serrano_smith_findings",
    "kendall_summaries",
]

#: the evaluators of the recipe, in the study's names
EVALUATORS = TESTS
#: the methods every explanation is compared with (Serrano & Smith's rankings and Jain & Wallace's references)
RANKINGS = ("attention_gradient", "attention_x_gradient", "gradient", "loo", "random")
#: the methods each test needs besides the explanations
TEST_METHODS = {"kendall": ("gradient", "loo"), "erasure": RANKINGS, "permutation": (), "single": (), "uniform": ()}


def explanation_names(tm: TrainedModel) -> tuple[str, ...]:
    """The explanations tested: the reference models' attention; for a transformer the attention of layer
    ``cfg.layer`` (the row the classifier reads, mean over heads) and attention rollout."""
    return ("attention",) if tm.vocab is not None else ("attention", "rollout")


def eval_indices(cfg: ReplicationConfig, tm: TrainedModel, test: TextDataset,
                 limit: int | None | str = "config") -> list[int]:
    """The test rows evaluated: a seeded shuffle's first ``limit`` rows (default ``cfg.limit``; None: all), then
    sorted by length (so that chunks pad little); the order of evaluation (and of the study's examples)."""
    limit = cfg.limit if limit == "config" else limit
    idx = list(range(len(test)))
    if limit is not None and limit < len(idx):
        random.Random(cfg.seed + 3).shuffle(idx)
        idx = idx[: int(limit)]
    lengths = {i: tm.n_tokens(test.texts[i]) for i in idx}
    return sorted(idx, key=lambda i: (lengths[i], i))


def eval_batch_size(cfg: ReplicationConfig, tm: TrainedModel) -> int:
    """Rows per evaluation chunk: ``cfg.eval_batch_size``, or 128 for a reference model and 32 for a transformer."""
    return cfg.eval_batch_size or (128 if tm.vocab is not None else 32)


@dataclass
class StudyPlan:
    """One study of the recipe: the ``tests`` (evaluators) it runs, the ``methods`` they need, on test ``rows``,
    written to ``OUT/folder``."""

    folder: str
    tests: tuple[str, ...]
    methods: tuple[str, ...]
    rows: list[int]


def plan_studies(cfg: ReplicationConfig, tm: TrainedModel, test: TextDataset) -> list[StudyPlan]:
    """The studies the recipe runs: one per distinct number of rows among ``cfg.tests`` (``cfg.limit_of``), in the
    order of :data:`attnfaith.reference.config.TESTS`; the first is written to ``evaluation/``, the others to
    ``evaluation-<tests>/``. Each runs the explanations and the methods its tests need (:data:`TEST_METHODS`)."""
    groups: dict[int | None, list[str]] = {}
    for t in TESTS:
        if t in cfg.tests:
            groups.setdefault(cfg.limit_of(t), []).append(t)
    plans = []
    for i, (limit, tests) in enumerate(groups.items()):
        needs = {m for t in tests for m in TEST_METHODS[t]}
        methods = explanation_names(tm) + tuple(m for m in RANKINGS if m in needs)
        plans.append(StudyPlan(folder="evaluation" if i == 0 else "evaluation-" + "-".join(tests), tests=tuple(tests),
                               methods=methods, rows=eval_indices(cfg, tm, test, limit)))
    return plans


def _tokenizer(tm: TrainedModel) -> Any:
    return VocabularyTokenizer(tm.vocab) if tm.vocab is not None else tm.tokenizer


def study_config(cfg: ReplicationConfig, tm: TrainedModel, max_tokens: int,
                 evaluators: Sequence[str] = EVALUATORS, methods: Sequence[str] | None = None) -> EvaluationConfig:
    """The study of the recipe (module docstring). ``max_tokens``: the longest evaluated text's positions, the
    truncation length of a reference model (which has no position limit: nothing is cut); a transformer keeps
    ``cfg.max_length``."""
    return EvaluationConfig(
        methods=tuple(methods) if methods is not None else explanation_names(tm) + RANKINGS,
        evaluators=tuple(evaluators), layer=cfg.layer, batch_size=eval_batch_size(cfg, tm), seed=cfg.seed,
        max_length=max(int(max_tokens), 1) if tm.vocab is not None else tm.max_length,
        permutations=cfg.n_permutations, n_random=cfg.n_random, variants_per_forward=cfg.max_examples_per_batch,
        erasure_levels=tuple(cfg.resolved_erasure_levels), gradient_detach_attention=cfg.resolved_detach_attention)


def evaluate_test_split(cfg: ReplicationConfig, tm: TrainedModel, test: TextDataset, rows: Sequence[int],
                        out: str | Path, *, evaluators: Sequence[str] = EVALUATORS,
                        methods: Sequence[str] | None = None, report: bool = True,
                        figures: bool = True) -> dict[str, Any]:
    """The study of :func:`study_config` on ``test`` rows ``rows`` (in that order), written to ``out`` (replaced if
    it holds a run); returns its ``results.json`` content (per-example records, ``summary`` with the papers'
    tables)."""
    rows = [int(i) for i in rows]
    # a reference model's truncation length: its longest text (a transformer keeps cfg.max_length)
    max_tokens = max((tm.n_tokens(test.texts[i]) for i in rows), default=1) if tm.vocab is not None else 0
    config = study_config(cfg, tm, max_tokens, evaluators, methods)
    return run_evaluation(
        tm.model, _tokenizer(tm), [test.texts[i] for i in rows], [test.labels[i] for i in rows], config=config,
        out_dir=out, example_ids=rows, overwrite=True, progress=cfg.progress, report=report, figures=figures,
        model_source=f"{cfg.encoder} trained by attnfaith replicate", title=f"{cfg.encoder}: the papers' tests",
        data_info={"source": str(cfg.data), "split": "test", "rows": "example_id = row of the test split"})


def table2(run: dict[str, Any], explanation: str = "attention") -> dict[str, dict[str, Any]]:
    """Jain & Wallace's Table 2 of ``explanation`` from a study run: ``{"gradient": {class: row}, "loo": ...}``
    (:func:`attnfaith.study.builtin.kendall.jw_table`)."""
    return jw_table(run, explanation)


def serrano_smith_findings(run: dict[str, Any]) -> dict[str, Any]:
    """Serrano & Smith's qualitative claims, checked on a study run's summary: whether removing the top attention
    weight rarely (< 10 %) flips the decision, and per erasure level the order of the rankings by the mean fraction
    removed before a flip (on the examples where every ranking flipped, and on each ranking's own flipped
    examples) and whether random needs the most. The rankings compared are Serrano & Smith's: every method of the
    run but Jain & Wallace's input ``gradient``."""
    summary = run["summary"]
    findings: dict[str, Any] = {}
    single = summary.get("attention", {})
    if single.get("single_flip_top"):
        top = single["single_flip_top"]["mean"]
        findings["single_weight"] = {
            "flip_top": top, "flip_random": (single.get("single_flip_random") or {}).get("mean"),
            "rarely_flips": bool(top is not None and top < 0.1),
            "share_delta_js_positive": _share_positive(run, ("single", "delta_js")),
        }
    compared = [m for m in run["config"]["methods"] if m != "gradient"]  # Serrano & Smith's rankings
    for level, t in (ranking_comparison(run, compared) or {}).items():
        findings[f"erasure_{level}"] = {
            "n_common": t["n_common"], "ranking_order_common": t["order_common"],
            "random_needs_most": bool(t["order_common"] and t["order_common"][-1] == "random"),
            "ranking_order_all_flipped": t["order_own"],
            "random_needs_most_all_flipped": bool(t["order_own"] and t["order_own"][-1] == "random"),
        }
    return findings


def _share_positive(run: dict[str, Any], path: tuple[str, str]) -> float | None:
    vals = [ex[path[0]][path[1]] for ex in run["examples"]
            if ex.get(path[0]) and ex[path[0]].get("has_random") and ex[path[0]].get(path[1]) is not None]
    return sum(v > 0 for v in vals) / len(vals) if vals else None


def kendall_summaries(tm: TrainedModel, test: TextDataset, cfg: ReplicationConfig,
                      rows: Sequence[int] | None = None, out: str | Path | None = None) -> dict[str, Any]:
    """Jain & Wallace's Table 2 alone (the study with the ``kendall`` evaluator and the methods ``attention``,
    ``gradient``, ``loo``) on ``test`` rows ``rows`` (default all): ``{"gradient": {class: row}, "loo": ...}``.
    Used for the other seeds' models (how much τ moves between training seeds) and by the slow replication test.
    ``out``: the study's folder (default a temporary one, removed)."""
    rows = list(range(len(test))) if rows is None else [int(i) for i in rows]
    kwargs: dict[str, Any] = dict(evaluators=("kendall",), methods=("attention", "gradient", "loo"), report=False,
                                  figures=False)
    if out is not None:
        return table2(evaluate_test_split(cfg, tm, test, rows, out, **kwargs))
    with tempfile.TemporaryDirectory(prefix="attnfaith-kendall-") as tmp:
        return table2(evaluate_test_split(cfg, tm, test, rows, tmp, **kwargs))
