"""``attnfaith evaluate`` end to end on a tiny model saved with ``save_pretrained`` and a 20-line CSV: every output
file, the numbers against direct calls of the evaluators, every error case (message, exit code, nothing lost), and
an interrupted run resumed to the same results."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnfaith import cli
from attnfaith.study import registry, runner, state
from attnfaith.cli import main
from attnfaith.demo import make_task, word_tokenizer
from attnfaith.testing import tiny_model

FAST = ["--quiet", "--threads", "1", "--permutations", "8", "--ig-steps", "6", "--batch-size", "10"]
METHODS = ("attention", "rollout", "gradient", "ig", "loo", "random")
FIGURES = ["erasure_curves", "flip_fraction", "kendall_tau", "permutation_violin", "single_delta_js"] + [
    f"heatmap_{m}" for m in METHODS]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    tok = word_tokenizer()
    model = tiny_model("bert", num_labels=2, vocab_size=len(tok), seed=0)
    model.config.id2label = {0: "negative", 1: "positive"}
    model.config.label2id = {"negative": 0, "positive": 1}
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    make_task(20, seed=3).to_csv(root / "data.csv")
    return root


@pytest.fixture(scope="module")
def finished(workdir) -> Path:
    out = workdir / "run"
    code = main(["evaluate", "--model", str(workdir / "model"), "--data", str(workdir / "data.csv"),
                 "--text-column", "text", "--label-column", "label", "--rationale-column", "rationale",
                 "--out", str(out), *FAST])
    assert code == 0
    return out


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("attnfaith: error: ")
    return lines[0]


# ------------------------------------------------------------------------------------------------------------ help


@pytest.mark.parametrize("argv", [["--help"], ["evaluate", "--help"], ["report", "--help"], ["demo", "--help"]])
def test_help_on_every_command(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "usage: attnfaith" in out
    if argv[0] == "evaluate":
        for flag in ("--model", "--data", "--text-column", "--label-column", "--split", "--limit", "--methods",
                     "--evaluators", "--layer", "--device", "--batch-size", "--seed", "--out", "--resume",
                     "--quiet", "--trust-remote-code"):
            assert flag in out


def test_python_dash_m(capsys):
    res = subprocess.run([sys.executable, "-m", "attnfaith", "--version"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("attnfaith ")


# ------------------------------------------------------------------------------------------------------------ outputs


def test_evaluate_writes_every_file(finished):
    assert (finished / "results.json").is_file()
    assert (finished / "report.md").is_file()
    for name in FIGURES:
        p = finished / "figures" / f"{name}.png"
        assert p.is_file() and p.stat().st_size > 5000, name
    report = (finished / "report.md").read_text()
    for needle in ("## Which explanation is faithful?", "95%", "Jain & Wallace (2019), Table 2",
                   "Serrano & Smith (2019)", "rationale P@k", "Kendall τ vs LOO", "![Erasure curves]"):
        assert needle in report, needle
    for m in ("attention", "attention rollout", "gradient × input", "integrated gradients", "leave-one-out"):
        assert f"- **{m}**:" in report  # a verdict per method
    run = json.loads((finished / "results.json").read_text())
    # with a rationale column the known rationale (an oracle) joins the default methods, before random
    assert run["config"]["methods"] == [*METHODS[:-1], "known_rationale", "random"]
    assert run["seed"] == 0
    for key in ("attnfaith", "torch", "transformers", "captum", "python"):
        assert key in run["versions"]
    assert run["model"]["class"] == "BertForSequenceClassification"
    assert run["model"]["transformers_version"]
    assert run["timings"]["evaluation_seconds"] > 0 and "method:ig" in run["timings"]["stages"]
    assert len(run["examples"]) == 20 and [e["index"] for e in run["examples"]] == list(range(20))
    ex = run["examples"][0]
    for key in ("scores", "kendall", "permutation", "erasure_token", "erasure_attention", "single", "uniform",
                "rationale_precision"):
        assert key in ex, key


def test_results_match_direct_evaluator_calls(workdir, finished):
    """Every number in results.json equals a direct call of the evaluator on the same chunk (seed 0 for every chunk,
    example_ids = the dataset indices)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from attnfaith import (ErasureFlip, GradientImportance, KendallTau, LeaveOneOut, PermutationTVD,
                           SingleWeightErasure, UniformAttention, integrated_gradients)
    from attnfaith.reference.data import encode_for_hf, read_table

    run = json.loads((finished / "results.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(workdir / "model").eval()
    tok = AutoTokenizer.from_pretrained(workdir / "model")
    ds = read_table(workdir / "data.csv", "text", "label")

    def close(a, b, tol=1e-5):
        if a is None or (isinstance(a, float) and math.isnan(a)):
            return b is None or (isinstance(b, float) and math.isnan(b))
        return b is not None and abs(float(a) - float(b)) <= tol * max(1.0, abs(float(a)))

    n_flip = 0
    for c in range(2):
        rows = range(10 * c, 10 * c + 10)
        enc = encode_for_hf(tok, [ds.texts[i] for i in rows], max_length=128)
        exs = [run["examples"][i] for i in rows]
        items = enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()

        kt = KendallTau(model, reference="loo").evaluate(enc)  # default: last-layer attention vs leave-one-out
        ids = list(rows)
        perm = PermutationTVD(model, layer=-1, n_permutations=8, seed=0).evaluate(enc, example_ids=ids)
        grad = GradientImportance(model).attribute(enc)
        ef_tok = ErasureFlip(model, level="token", erase="delete", seed=0).evaluate(enc, grad, example_ids=ids)
        ef_rand = ErasureFlip(model, level="token", erase="delete", seed=0).evaluate(enc, "random", example_ids=ids)
        ef_att = ErasureFlip(model, level="attention", layer=-1, seed=0).evaluate(enc, "attention", example_ids=ids)
        single = SingleWeightErasure(model, layer=-1, seed=0).evaluate(enc, example_ids=ids)
        uni = UniformAttention(model).evaluate(enc)
        ig = integrated_gradients(model, n_steps=6).attribute(enc)
        loo = LeaveOneOut(model).attribute(enc)
        for b, ex in enumerate(exs):
            pos = items[b].nonzero().flatten()
            assert close(ex["kendall"]["loo"]["attention"]["tau"], kt.tau[b].item())
            assert close(ex["kendall"]["loo"]["attention"]["p"], kt.pvalue[b].item())
            assert close(ex["permutation"]["median_tvd"], perm.median[b].item())
            assert close(ex["permutation"]["max_attention"], perm.max_attention[b].item())
            for rec, res in ((ex["erasure_token"]["gradient"], ef_tok), (ex["erasure_token"]["random"], ef_rand),
                             (ex["erasure_attention"]["attention"], ef_att)):
                assert close(rec["fraction_removed"], res.fraction_removed[b].item())
                assert rec["flipped"] == bool(res.flipped[b])
                assert close(rec["aopc"], res.aopc[b].item())
                n = int(res.n_items[b])
                assert all(close(x, y) for x, y in zip(rec["curve"], res.curve[b, : n + 1].tolist()))
                n_flip += rec["flipped"]
            assert close(ex["single"]["delta_js"], single.delta_js[b].item(), 1e-4)
            assert ex["single"]["flip_top"] == bool(single.flip_top[b])
            assert close(ex["uniform"]["tvd"], uni.tvd[b].item())
            assert all(close(x, y, 1e-4) for x, y in zip(ex["scores"]["ig"], ig[b, pos].tolist()))
            assert all(close(x, y) for x, y in zip(ex["scores"]["loo"], loo[b, pos].tolist()))
            assert all(close(x, y) for x, y in zip(ex["scores"]["gradient"], grad[b, pos].tolist()))
    assert n_flip > 0  # the comparison covered decisions that flip

    # the report's table is the bootstrap summary of those per-example numbers
    from attnfaith.study.statistics import bootstrap_mean

    fr = [e["erasure_token"]["attention"]["fraction_removed"] for e in run["examples"]]
    assert run["summary"]["methods"]["attention"]["erasure_token_fraction"] == pytest.approx(bootstrap_mean(fr, seed=0))


# ------------------------------------------------------------------------------------------------------------ errors


def _evaluate(workdir, out, *extra, data=None, model=None):
    return main(["evaluate", "--model", str(model or workdir / "model"), "--data", str(data or workdir / "data.csv"),
                 "--text-column", "text", "--out", str(out), *FAST, *extra])


def test_error_missing_file(workdir, tmp_path, capsys):
    assert _evaluate(workdir, tmp_path / "o", data=tmp_path / "nope.csv") == 1
    line = _error(capsys)
    assert "cannot read --data" in line and "nope.csv" in line


def test_error_unreadable_file(workdir, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text,label\n\xff\xfe\x00garbage\x80,1\n")
    assert _evaluate(workdir, tmp_path / "o", data=bad) == 1
    assert "cannot read --data" in _error(capsys)
    assert _evaluate(workdir, tmp_path / "o2", data=tmp_path) == 1  # a folder is read as a datasets folder
    err = _error(capsys)
    assert f"--data {tmp_path}" in err and ("needs the datasets package" in err or "cannot load --data" in err)


def test_error_missing_column(workdir, tmp_path, capsys):
    assert main(["evaluate", "--model", str(workdir / "model"), "--data", str(workdir / "data.csv"),
                 "--text-column", "sentence", "--out", str(tmp_path / "o"), *FAST]) == 1
    line = _error(capsys)
    assert "'sentence' not found" in line and "'text'" in line
    assert _evaluate(workdir, tmp_path / "o", "--label-column", "gold") == 1
    assert "label column 'gold' not found" in _error(capsys)


@pytest.mark.parametrize("flag,value,word", [("--methods", "attention,saliency", "method 'saliency'"),
                                              ("--evaluators", "erasure,robustness", "evaluator 'robustness'")])
def test_error_unknown_method_or_evaluator(workdir, tmp_path, capsys, flag, value, word):
    assert _evaluate(workdir, tmp_path / "o", flag, value) == 2
    line = _error(capsys)
    assert f"unknown {word}" in line and "choose from" in line
    assert not (tmp_path / "o").exists()


def test_error_not_a_sequence_classifier(workdir, tmp_path, capsys):
    from transformers import BertConfig, BertForMaskedLM

    tok = word_tokenizer()
    BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=16)).save_pretrained(tmp_path / "mlm")
    tok.save_pretrained(tmp_path / "mlm")
    capsys.readouterr()  # save_pretrained's progress bar
    assert _evaluate(workdir, tmp_path / "o", model=tmp_path / "mlm") == 1
    line = _error(capsys)
    assert "not a sequence classifier" in line and "BertForMaskedLM" in line


def test_error_model_not_found(workdir, tmp_path, capsys):
    assert _evaluate(workdir, tmp_path / "o", model=tmp_path / "no-model") == 1
    assert "cannot load model" in _error(capsys)


def test_error_label_outside_classes(workdir, tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("text,label\ngood day,1\nbad day,5\n")
    assert _evaluate(workdir, tmp_path / "o", "--label-column", "label", data=data) == 1
    line = _error(capsys)
    assert "label 5" in line and "outside the model's classes" in line and "1=positive" in line
    names = tmp_path / "n.csv"
    names.write_text("text,label\ngood day,positive\nbad day,neutral\n")
    assert _evaluate(workdir, tmp_path / "o", "--label-column", "label", data=names) == 1
    assert "label 'neutral' is not one of the model's classes" in _error(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_error_cuda_absent(workdir, tmp_path, capsys):
    assert _evaluate(workdir, tmp_path / "o", "--device", "cuda") == 1
    assert "CUDA is not available" in _error(capsys)


def test_errors_never_lose_a_finished_run(workdir, finished, capsys):
    before = _snapshot(finished)
    assert _evaluate(workdir, finished) == 1  # no --resume / --overwrite
    assert "already holds a run" in _error(capsys)
    assert _evaluate(workdir, finished, "--methods", "nope") == 2
    _error(capsys)
    assert _evaluate(workdir, finished, "--resume", "--label-column", "gold") == 1
    _error(capsys)
    assert _evaluate(workdir, finished, "--resume", "--seed", "3") == 1  # a resume that does not match
    assert "different settings" in _error(capsys)
    assert _snapshot(finished) == before


# ------------------------------------------------------------------------------------------------------------ resume


def test_interrupted_run_resumes_to_the_same_results(workdir, finished, monkeypatch, capsys):
    out = workdir / "interrupted"
    argv = ["evaluate", "--model", str(workdir / "model"), "--data", str(workdir / "data.csv"), "--text-column",
            "text", "--label-column", "label", "--rationale-column", "rationale", "--out", str(out), *FAST,
            "--no-figures"]
    original = runner.ChunkRunner.run
    calls = []
    stop = {"at": 1}

    def interrupted(self, index, *args, **kwargs):
        calls.append(index)
        if index == stop["at"]:
            raise KeyboardInterrupt  # Ctrl-C while chunk 1 runs
        return original(self, index, *args, **kwargs)

    monkeypatch.setattr(runner.ChunkRunner, "run", interrupted)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    assert not (out / "results.json").exists()
    header, chunks = state.load_state(out)
    assert header is not None and sorted(chunks) == [0]
    # a torn last line (killed while writing) is ignored
    with open(out / "partial.jsonl", "a") as f:
        f.write('{"kind": "chunk", "index": 1, "exa')

    calls.clear()
    stop["at"] = None
    assert main(argv + ["--resume"]) == 0
    assert calls == [1]  # the finished chunk was not recomputed
    resumed = json.loads((out / "results.json").read_text())
    clean = json.loads((finished / "results.json").read_text())
    assert resumed["examples"] == clean["examples"]
    assert resumed["summary"]["methods"] == clean["summary"]["methods"]
    assert resumed["timings"]["chunks_resumed"] == 1

    # resuming a finished run recomputes nothing and rebuilds the same files
    calls.clear()
    assert main(argv + ["--resume"]) == 0
    assert calls == []
    assert json.loads((out / "results.json").read_text())["examples"] == clean["examples"]


def test_limit_split_and_jsonl(workdir, tmp_path):
    data = tmp_path / "d.jsonl"
    rows = [{"sentence": t, "split": "dev" if i % 2 else "train", "y": "positive" if y else "negative"}
            for i, (t, y) in enumerate(zip(make_task(12, seed=5).texts, make_task(12, seed=5).labels))]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "o"
    assert main(["evaluate", "--model", str(workdir / "model"), "--data", str(data), "--text-column", "sentence",
                 "--label-column", "y", "--split", "dev", "--limit", "4", "--methods", "attention,random",
                 "--evaluators", "erasure", "--out", str(out), *FAST, "--no-figures"]) == 0
    run = json.loads((out / "results.json").read_text())
    assert [e["text"] for e in run["examples"]] == [r["sentence"] for r in rows if r["split"] == "dev"][:4]
    assert [e["label"] for e in run["examples"]] == [int(r["y"] == "positive") for r in rows if r["split"] == "dev"][:4]
    assert run["config"]["methods"] == ["attention", "random"]


def test_adversarial_only_when_asked(workdir, tmp_path, capsys):
    out = tmp_path / "adv"
    assert main(["evaluate", "--model", str(workdir / "model"), "--data", str(workdir / "data.csv"),
                 "--text-column", "text", "--limit", "4", "--methods", "attention", "--evaluators", "adversarial",
                 "--adversarial-steps", "3", "--out", str(out), *FAST]) == 0
    assert "no per-method metric" in capsys.readouterr().out
    run = json.loads((out / "results.json").read_text())
    assert all(0 <= e["adversarial"]["jsd"] <= math.log(2) + 1e-6 for e in run["examples"])
    assert (out / "figures" / "adversarial_violin.png").is_file()
    assert "adversarial attention: max JSD" in (out / "report.md").read_text()
    finished_default = registry.evaluator_names(default_only=True)
    assert "adversarial" not in finished_default
