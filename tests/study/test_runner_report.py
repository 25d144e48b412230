"""Small pieces of the evaluation pipeline and the report: bootstrap intervals, word alignment of tokens, the
reference-model tokenizer adapter, names, empty texts, skipped methods."""

from __future__ import annotations

import json
import math

import pytest
import torch

from attnfaith._text import VocabularyTokenizer, word_of_offsets, encode_texts, parse_index_list
from attnfaith.reference.vocabulary import Vocabulary
from attnfaith.study import PipelineError, run_evaluation
from attnfaith.study.config import parse_list
from attnfaith.study.statistics import bootstrap_mean, tau_strength


def test_bootstrap_mean_is_seeded_and_ignores_missing():
    vals = [0.1, 0.5, None, 0.3, float("nan"), 0.9, 0.2]
    a, b = bootstrap_mean(vals, seed=3), bootstrap_mean(vals, seed=3)
    assert a == b and a["n"] == 5
    assert a["mean"] == pytest.approx(0.4)
    assert a["lo"] <= a["mean"] <= a["hi"] and a["lo"] >= 0.1 and a["hi"] <= 0.9
    assert bootstrap_mean([], seed=0) == {"mean": None, "lo": None, "hi": None, "n": 0}
    assert bootstrap_mean([0.7]) == {"mean": 0.7, "lo": 0.7, "hi": 0.7, "n": 1}
    wide = bootstrap_mean(list(range(10)), seed=0)
    narrow = bootstrap_mean(list(range(10)) * 10, seed=0)
    assert narrow["hi"] - narrow["lo"] < wide["hi"] - wide["lo"]


def test_tau_words():
    assert tau_strength(0.05).startswith("no") and tau_strength(0.2).startswith("weak")
    assert tau_strength(0.4).startswith("moderate") and tau_strength(0.8).startswith("strong")
    assert "negative" in tau_strength(-0.4)


def test_parse_list():
    assert parse_list("loo, attention", ("attention", "gradient", "loo"), "method") == ["attention", "loo"]
    with pytest.raises(PipelineError, match="unknown method 'x'"):
        parse_list("attention,x", ("attention",), "method")
    with pytest.raises(PipelineError, match="no method"):
        parse_list(" , ", ("attention",), "method")
    assert parse_index_list("[3, 7]") == [3, 7] and parse_index_list("3 7") == [3, 7] and parse_index_list("") == []


def test_word_alignment_of_subword_tokens():
    text = "good, day  unbelievable"
    # tokens: "good" "," "day" "un" "##believable" + specials/padding (0, 0)
    offsets = [(0, 0), (0, 4), (4, 5), (6, 9), (11, 13), (13, 23), (0, 0), (0, 0)]
    special = [1, 0, 0, 0, 0, 0, 1, 1]
    assert word_of_offsets(text, offsets, special) == [None, 0, 0, 1, 2, 2, None, None]


def test_vocabulary_tokenizer_matches_the_reference_encoding():
    vocab = Vocabulary.build(["the good day", "a bad day"])
    tok = VocabularyTokenizer(vocab)
    enc = encode_texts(tok, ["the good day", "zzz day"], max_length=16)
    ref = vocab.encode(["the good day", "zzz day"])
    assert torch.equal(enc.inputs["input_ids"], ref["input_ids"])
    assert enc.inputs["special_tokens_mask"].tolist() == [[1, 0, 0, 0, 1], [1, 0, 0, 1, 1]]  # <unk> is a word
    assert enc.word_ids == [[None, 0, 1, 2, None], [None, 0, 1, None, None]]
    assert enc.tokens[1][:3] == ["<sos>", "<unk>", "day"]


def test_hf_word_ids_follow_whitespace_words():
    from attnfaith.demo import word_tokenizer

    enc = encode_texts(word_tokenizer(), ["the good day", "good"], max_length=16)
    assert enc.word_ids == [[None, 0, 1, 2, None], [None, 0, None, None, None]]


@pytest.fixture(scope="module")
def tiny():
    from attnfaith.demo import word_tokenizer
    from attnfaith.testing import tiny_model

    tok = word_tokenizer()
    return tiny_model("bert", num_labels=2, vocab_size=len(tok)), tok


def test_empty_texts_are_left_out_and_listed(tiny, tmp_path):
    model, tok = tiny
    run = run_evaluation(model, tok, ["good day", "", "the bad river"], [1, 0, 0], "attention,random", "erasure",
                         tmp_path / "o", progress=False, figures=False, permutations=5)
    assert [e["index"] for e in run["examples"]] == [0, 2]
    assert run["data"]["dropped_empty"] == [1]
    assert any("without any real token" in n for n in run["notes"])


def test_model_left_as_found_and_labels_checked(tiny, tmp_path):
    model, tok = tiny
    model.train()
    with pytest.raises(PipelineError, match="outside the model's classes"):
        run_evaluation(model, tok, ["good day"], [4], "attention", "erasure", tmp_path / "a", progress=False)
    run_evaluation(model, tok, ["good day", "a bad day"], None, "attention,gradient", "kendall,erasure",
                   tmp_path / "b", progress=False, figures=False)
    assert model.training and all(m.training for m in model.modules())
    model.eval()


def test_reference_model_skips_rollout_unless_named(tmp_path):
    from attnfaith.reference.models import BiLSTMAttentionClassifier

    vocab = Vocabulary.build(["the good day", "a bad day"])
    model = BiLSTMAttentionClassifier(len(vocab), embed_dim=8, hidden_dim=8).eval()
    run = run_evaluation(model, vocab, ["the good day", "a bad day"], [1, 0], "attention,rollout,loo",
                         "kendall,erasure", tmp_path / "a", progress=False, figures=False)
    assert "rollout" in run["skipped"] and "rollout" not in run["examples"][0]["scores"]
    assert "rollout" in (tmp_path / "a" / "report.md").read_text()  # the note
    with pytest.raises(PipelineError, match="rollout does not apply"):
        run_evaluation(model, vocab, ["the good day"], None, "attention,rollout", "erasure", tmp_path / "b",
                       progress=False, figures=False, strict_methods=True)
    json.loads((tmp_path / "a" / "results.json").read_text(), parse_constant=lambda c: pytest.fail(c))


def test_numbers_do_not_depend_on_batch_size(tiny, tmp_path):
    """Per-example seeds: the same run in chunks of 3 and of 8 writes the same numbers (random methods and
    evaluators included); only the configuration's batch_size differs."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "compare_runs", Path(__file__).resolve().parents[2] / "benchmarks" / "compare_runs.py")
    compare_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare_runs)

    model, tok = tiny
    texts = ["good day", "the bad river runs", "a great and wonderful day", "poor", "bad bad good",
             "the river is awful today", "superb", "dreadful day by the river", "fine", "good good day river"]
    labels = [1, 0, 1, 0, 0, 0, 1, 0, 1, 1]
    runs = {}
    for bs in (3, 8):
        runs[bs] = run_evaluation(model, tok, texts, labels, "attention,random,gradient",
                                  "kendall,erasure,permutation,single,adversarial", tmp_path / f"bs{bs}",
                                  progress=False, figures=False, batch_size=bs, seed=5, permutations=6,
                                  adversarial_steps=2)
    assert runs[3]["config"]["batch_size"] == 3 and runs[8]["config"]["batch_size"] == 8
    diffs = list(compare_runs.differences(runs[3], runs[8], rtol=0.0, atol=1e-6))
    assert diffs == ["/config/batch_size: 3 != 8"], diffs[:10]
    # the random parts were exercised
    ex = runs[3]["examples"][4]
    assert ex["permutation"]["median_tvd"] is not None and "random" in ex["erasure_token"]


def test_report_ranks_methods_with_paired_comparisons_and_says_n(tiny, tmp_path):
    """summary["comparisons"]: per metric with a direction, the methods ranked with intervals and compared in
    pairs (Holm); report.md shows the ranking; verdicts over few examples say n and are softened; every figure is
    also an SVG and a PDF, redrawn byte for byte."""
    from attnfaith.study import plots
    from attnfaith.study.statistics import holm, paired_difference

    model, tok = tiny
    texts = ["good day", "the bad river runs", "a great and wonderful day", "poor", "bad bad good",
             "the river is awful today", "superb", "dreadful day by the river"]
    run = run_evaluation(model, tok, texts, None, "attention,random,gradient", "erasure,kendall,permutation,single",
                         tmp_path / "r", progress=False, seed=2, permutations=4)
    comp = run["summary"]["comparisons"]
    assert "erasure_token_fraction" in comp and "tau_loo" not in comp  # no loo among the methods
    aopc = comp["erasure_token_aopc"]
    assert aopc["better"] == "higher" and {r["method"] for r in aopc["ranking"]} == {"attention", "random", "gradient"}
    assert [r["rank"] for r in aopc["ranking"]] == sorted(r["rank"] for r in aopc["ranking"])
    for r in aopc["ranking"]:
        assert 1 <= r["rank_lo"] <= r["rank"] <= r["rank_hi"] <= 3
    # each pair is the paired difference of the per-example values, Holm-adjusted over the metric's pairs
    values = {m: [ex["erasure_token"][m]["aopc"] for ex in run["examples"]] for m in ("attention", "random", "gradient")}
    for pair in aopc["pairs"]:
        ref = paired_difference(values[pair["a"]], values[pair["b"]], seed=2)
        assert {k: pair[k] for k in ref} == pytest.approx(ref)
    assert [p["p_holm"] for p in aopc["pairs"]] == holm([p["p"] for p in aopc["pairs"]])
    report = (tmp_path / "r" / "report.md").read_text()
    assert "## Ranking of the methods (paired comparisons)" in report and "Holm p" in report
    assert "BCa bootstrap" in report
    # 8 examples: every verdict that compares with random says so
    verdict = run["summary"]["verdicts"]["attention"]
    assert "random" in verdict and ("too few examples to tell" in verdict or "only" in verdict), verdict
    assert "(n=" in report  # cells over fewer than FEW examples show their n
    # vector figures next to every PNG, and a redraw writes the same bytes
    figs = run["figures"]
    assert "kendall_tau" in figs and "single_delta_js" in figs
    again = plots.make_figures(json.loads((tmp_path / "r" / "results.json").read_text()), tmp_path / "again")
    assert again.keys() == figs.keys()
    for key, info in figs.items():
        assert info["vector"] == [f"figures/{key}.svg", f"figures/{key}.pdf"]
        for rel in [info["path"], *info["vector"]]:
            assert (tmp_path / "r" / rel).stat().st_size > 1000, rel
        for ext in ("svg", "pdf"):
            assert (tmp_path / "r" / "figures" / f"{key}.{ext}").read_bytes() == \
                (tmp_path / "again" / f"{key}.{ext}").read_bytes(), (key, ext)


def test_the_known_rationale_is_a_method_of_runs_with_rationales(tiny, tmp_path):
    """With rationales, the default methods include ``known_rationale``: its scores are 1 exactly on the items of
    the rationale's words (by hand from the texts), so its rationale precision is 1. Without rationales it is
    left out of the defaults, and naming it is an error."""
    model, tok = tiny
    texts = ["the good day was long", "a bad river and the awful road", "great music"]
    rationales = [[1], [1, 4], [0]]
    run = run_evaluation(model, tok, texts, [1, 0, 1], None, "erasure", tmp_path / "r", rationales=rationales,
                         progress=False, figures=False, report=False)
    assert "known_rationale" in run["config"]["methods"]
    for example, text, words in zip(run["examples"], texts, rationales):
        n = len(text.split())  # the word-level tokenizer: one item per word
        assert example["scores"]["known_rationale"] == [1.0 if w in words else 0.0 for w in range(n)]
        assert example["rationale_precision"]["known_rationale"] == 1.0
        assert "known_rationale" in example["erasure_token"]
    plain = run_evaluation(model, tok, texts, [1, 0, 1], None, "erasure", tmp_path / "p", progress=False,
                           figures=False, report=False)
    assert "known_rationale" not in plain["config"]["methods"]
    with pytest.raises(PipelineError, match="needs rationales"):
        run_evaluation(model, tok, texts, None, "attention,known_rationale", "erasure", tmp_path / "q",
                       progress=False)
