"""The study registry: an evaluator defined and registered here runs through ``run_evaluation``, and its records,
summary, report rows, verdict clause and figure follow from its registration, without any change to the runner,
the report or the figures."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

import attnfaith
from attnfaith._inputs import call_model, probs_of
from attnfaith._state import model_guard
from attnfaith.evaluators.result import Result
from attnfaith.metrics import tvd
from attnfaith.perturb import delete_positions, pad_id_of
from attnfaith.study import (
    EvaluatorSpec, Figure, Metric, PipelineError, register_evaluator, registry, run_evaluation, unregister,
)
from attnfaith.study.registry import METHOD

STUDY = Path(attnfaith.__file__).parent / "study"


# ---------------------------------------------------------------------------------------------- the new evaluator
@dataclass
class TopDeletionResult(Result):
    """Output change (TVD) when each example's top-scored item is deleted."""

    layout: ClassVar[dict[str, str]] = {"tvd": "row", "top_index": "row", "items": "token"}
    positions: ClassVar[tuple[str, ...]] = ("top_index",)
    tvd: torch.Tensor
    top_index: torch.Tensor
    items: torch.Tensor
    method: str = ""

    def summary(self) -> dict[str, Any]:
        return {"mean_tvd": float(self.tvd.double().mean())}


def run_top_deletion(ctx) -> Any:
    batch = ctx.batch
    with model_guard(ctx.model), torch.no_grad():
        before = probs_of(call_model(ctx.model, batch)).float()
        for m in ctx.methods:
            top = ctx.scores[m].masked_fill(~batch.items, float("-inf")).argmax(-1)
            drop = torch.nn.functional.one_hot(top, batch.input_ids.shape[1]).bool()
            after = probs_of(call_model(ctx.model, delete_positions(batch, drop, pad_id_of(ctx.model)))).float()
            yield ("top_deletion", m), TopDeletionResult(tvd=tvd(before, after).cpu(), top_index=top.cpu(),
                                                         items=batch.items.cpu(), method=m)


def draw_top_deletion(run, path) -> bool:
    from attnfaith.study import plots

    vals = [e["top_deletion"]["attention"]["tvd"] for e in run["examples"] if "top_deletion" in e]
    if not vals:
        return False
    fig, ax = plots.pyplot().subplots()
    ax.hist(vals)
    return plots.finish(fig, path)


TOP_DELETION = EvaluatorSpec(
    name="top_deletion", order=35, run=run_top_deletion, writes=("top_deletion",), needs_items=True, default=False,
    record={"tvd": "tvd", "top_item": "top_index"},
    metrics=(Metric(key="top_deletion_tvd", header="TVD when its top token is deleted ↑", better="higher",
                    path=("top_deletion", METHOD), value="tvd",
                    description="output TVD when the method's top-scored token is deleted"),),
    verdict=lambda v: ([f"deleting its top token moves the output by {v.table[v.method]['top_deletion_tvd']['mean']:.3f}"]
                       if "top_deletion_tvd" in v.table[v.method] else []),
    figures=(Figure(key="top_deletion", draw=draw_top_deletion, title="Top token deleted",
                    caption="Output TVD when attention's top token is deleted."),),
)


@pytest.fixture
def top_deletion():
    register_evaluator(TOP_DELETION)
    try:
        yield TOP_DELETION
    finally:
        unregister("top_deletion")


@pytest.fixture(scope="module")
def tiny():
    from attnfaith.demo import word_tokenizer
    from attnfaith.testing import tiny_model

    tok = word_tokenizer()
    return tiny_model("bert", num_labels=2, vocab_size=len(tok)), tok


TEXTS = ["the good day was great", "a bad river", "the awful road and the good garden", "house"]


# ---------------------------------------------------------------------------------------------- tests
def test_a_registered_evaluator_runs_and_reports(tiny, top_deletion, tmp_path):
    model, tok = tiny
    assert "top_deletion" in registry.evaluator_names() and "top_deletion" not in registry.evaluator_names(True)
    run = run_evaluation(model, tok, TEXTS, [1, 0, 0, 1], "attention,random", "top_deletion,erasure", tmp_path,
                         progress=False, batch_size=3)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["evaluators"] == ["erasure", "top_deletion"]  # registration order
    for ex in saved["examples"]:
        rec = ex["top_deletion"]["attention"]
        assert set(rec) == {"tvd", "top_item"} and 0 <= rec["tvd"] <= 1
        scores = ex["scores"]["attention"]
        assert rec["top_item"] == max(range(len(scores)), key=lambda i: (scores[i], -i))
    row = saved["summary"]["methods"]["attention"]["top_deletion_tvd"]
    assert row["n"] == len(TEXTS) and row["mean"] == pytest.approx(
        sum(e["top_deletion"]["attention"]["tvd"] for e in saved["examples"]) / len(TEXTS))
    report = (tmp_path / "report.md").read_text()
    header = report.split("## Which explanation is faithful?")[1].splitlines()[2]
    # its column comes after the erasure columns (order 35 > 10) and its verdict clause is in the verdict
    assert header.index("erasure (token)") < header.index("TVD when its top token is deleted")
    assert "deleting its top token moves the output by" in report
    assert "figures/top_deletion.png" in report and (tmp_path / "figures" / "top_deletion.png").is_file()
    # its figure is also a vector figure, and its metric (a direction: "higher") is ranked and compared in pairs
    assert all((tmp_path / "figures" / f"top_deletion.{ext}").is_file() for ext in ("svg", "pdf"))
    comp = saved["summary"]["comparisons"]["top_deletion_tvd"]
    assert comp["better"] == "higher" and {r["method"] for r in comp["ranking"]} == {"attention", "random"}
    assert [(p["a"], p["b"]) for p in comp["pairs"]] == [("attention", "random")]
    assert "**TVD when its top token is deleted ↑** (higher is better)" in report.split("## Ranking of the methods")[1]
    assert run["summary"] == saved["summary"]


def test_the_cli_offers_registered_evaluators(top_deletion):
    from attnfaith.cli import build_parser

    help_text = build_parser()._subparsers._group_actions[0].choices["evaluate"].format_help()
    assert "top_deletion" in help_text


def test_names_are_checked(top_deletion):
    with pytest.raises(ValueError, match="already registered"):
        register_evaluator(TOP_DELETION)
    with pytest.raises(PipelineError, match="unknown evaluator 'nope'"):
        attnfaith.EvaluationConfig(evaluators=("nope",))
    with pytest.raises(KeyError):
        unregister("nope")


def test_result_records_of_chosen_fields():
    res = TopDeletionResult(tvd=torch.tensor([0.5, 0.25]), top_index=torch.tensor([2, 1]),
                            items=torch.tensor([[False, True, True], [False, True, False]]))
    assert res.records(["top_index"]) == [{"top_index": 1}, {"top_index": 0}]
    assert TOP_DELETION.records(res) == [{"tvd": 0.5, "top_item": 1}, {"tvd": 0.25, "top_item": 0}]
    with pytest.raises(KeyError, match="nope"):
        res.records(["nope"])


def test_runner_report_and_plots_name_no_evaluator_or_field():
    names = set(registry.evaluator_names()) | set(registry.method_names())
    fields = {k for e in registry.evaluator_names() for k in registry.evaluator_spec(e).record}
    fields |= {m.key for m in registry.metrics()}
    section = {"attention"}  # summary["attention"]: the section of the tests of the attention itself
    # (records.py defines the runner's own records, which the "rationale" and "scores" parts read)
    for module in ("runner.py", "report.py", "plots.py", "checks.py", "state.py"):
        literals = set(re.findall(r"""["']([A-Za-z_:]+)["']""", (STUDY / module).read_text()))
        named = literals & (names | fields) - (section if module == "report.py" else set())
        assert not named, (module, named)


def test_every_study_module_is_small():
    for path in STUDY.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 600, path
