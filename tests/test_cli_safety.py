"""``attnfaith evaluate`` refuses what would silently give wrong results, and turns cryptic failures into one-line
errors that name the argument, before anything is written to ``--out``.

Silently wrong before: a ``--resume`` with other weights or another tokenizer, a tokenizer that maps the data to its
unknown token, two runs writing one ``--out``, a hand-edited chunk line, texts cut at ``--max-length`` without a word.
Every expectation here is independent of the code under test: counts are recomputed from the data, locks are taken
with ``fcntl`` by another process, edits are made to the files by hand."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from attnfaith.study import runner
from attnfaith.attention.forward_args import max_positions
from attnfaith.cli import main
from attnfaith.demo import make_task, task_vocabulary, word_tokenizer
from attnfaith.study import EvaluationConfig, PipelineError, run_evaluation
from attnfaith.testing import tiny_model

FAST = ["--quiet", "--threads", "1", "--batch-size", "10", "--methods", "attention,random", "--evaluators",
        "erasure", "--no-figures"]

posix_only = pytest.mark.skipif(os.name != "posix", reason="the test takes the lock with fcntl")


def _save_model(folder: Path, seed: int, tokenizer=None, vocab_size: int | None = None) -> None:
    tok = tokenizer if tokenizer is not None else word_tokenizer()
    model = tiny_model("bert", num_labels=2, vocab_size=vocab_size or len(tok), seed=seed)
    model.config.id2label = {0: "negative", 1: "positive"}
    model.config.label2id = {"negative": 0, "positive": 1}
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("safety")
    _save_model(root / "model", seed=0)
    make_task(30, seed=3).to_csv(root / "data.csv")
    return root


def _evaluate(workdir: Path, out: Path, *extra: str, model: Path | None = None, data: Path | None = None) -> int:
    return main(["evaluate", "--model", str(model or workdir / "model"), "--data", str(data or workdir / "data.csv"),
                 "--text-column", "text", "--out", str(out), *FAST, *extra])


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("attnfaith: error: ")
    return lines[0]


def _interrupted_run(workdir: Path, out: Path, monkeypatch, capsys, *extra: str, model: Path | None = None) -> None:
    """A run stopped by Ctrl-C while chunk 1 runs: chunk 0 is in ``out/partial.jsonl``."""
    original = runner.ChunkRunner.run

    def stop_at_chunk_1(self, index, *args, **kwargs):
        if index == 1:
            raise KeyboardInterrupt
        return original(self, index, *args, **kwargs)

    monkeypatch.setattr(runner.ChunkRunner, "run", stop_at_chunk_1)
    assert _evaluate(workdir, out, *extra, model=model) == 130
    monkeypatch.setattr(runner.ChunkRunner, "run", original)
    capsys.readouterr()
    lines = (out / "partial.jsonl").read_text().splitlines()
    assert [json.loads(ln)["kind"] for ln in lines] == ["header", "chunk"]


# ------------------------------------------------------------------------------------------------ resume fingerprint


def test_resume_refuses_other_weights_in_the_same_folder(workdir, tmp_path, monkeypatch, capsys):
    model = tmp_path / "model"
    shutil.copytree(workdir / "model", model)
    out = tmp_path / "o"
    _interrupted_run(workdir, out, monkeypatch, capsys, model=model)
    before = (out / "partial.jsonl").read_bytes()
    _save_model(model, seed=1)  # same class, size, labels and path: other weights
    capsys.readouterr()
    assert _evaluate(workdir, out, "--resume", model=model) == 1
    line = _error(capsys)
    assert "different settings" in line and "weights" in line
    assert (out / "partial.jsonl").read_bytes() == before and not (out / "results.json").exists()
    _save_model(model, seed=0)  # the original weights again: the resume goes through
    capsys.readouterr()
    assert _evaluate(workdir, out, "--resume", model=model) == 0
    assert len(json.loads((out / "results.json").read_text())["examples"]) == 30


def test_resume_refuses_other_tokenizer(workdir, tmp_path, monkeypatch, capsys):
    other = tmp_path / "tok"
    # the same words with other ids: same size, same class, same special tokens
    word_tokenizer(list(reversed(task_vocabulary()))).save_pretrained(other)
    out = tmp_path / "o"
    _interrupted_run(workdir, out, monkeypatch, capsys)
    assert _evaluate(workdir, out, "--resume", "--tokenizer", str(other)) == 1
    line = _error(capsys)
    assert "different settings" in line and "tokenizer" in line
    assert not (out / "results.json").exists()


def test_resume_refuses_changed_in_memory_model(tmp_path):
    """The weights are fingerprinted from memory: a model that was never saved, changed in place between runs."""
    tok = word_tokenizer()
    model = tiny_model("bert", num_labels=2, vocab_size=len(tok), seed=0)
    texts = make_task(12, seed=1).texts
    kw = dict(methods="attention,random", evaluators="erasure", progress=False, figures=False, batch_size=6)
    original = runner.ChunkRunner.run
    try:
        def stop(self, index, *args, **kwargs):
            if index == 1:
                raise KeyboardInterrupt
            return original(self, index, *args, **kwargs)

        runner.ChunkRunner.run = stop
        with pytest.raises(KeyboardInterrupt):
            run_evaluation(model, tok, texts, out_dir=tmp_path / "o", **kw)
    finally:
        runner.ChunkRunner.run = original
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.classifier.bias[0] += 1e-3
    with pytest.raises(PipelineError, match="weights"):
        run_evaluation(model, tok, texts, out_dir=tmp_path / "o", resume=True, **kw)
    with torch.no_grad():
        model.classifier.bias.copy_(state["classifier.bias"])
    run = run_evaluation(model, tok, texts, out_dir=tmp_path / "o", resume=True, **kw)
    assert run["timings"]["chunks_resumed"] == 1
    # the model is left exactly as found
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------------------------ tokenizer


def test_model_folder_without_tokenizer_is_refused(workdir, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(workdir / "model" / name, bare / name)
    out = tmp_path / "o"
    assert _evaluate(workdir, out, model=bare) == 1
    line = _error(capsys)
    assert "--tokenizer" in line and "tokenizer" in line.split("--tokenizer")[0]
    assert not out.exists()


def test_tokenizer_that_maps_the_data_to_unknown_is_refused(workdir, tmp_path, capsys):
    texts = make_task(30, seed=3).texts
    known = ["good", "bad"]  # a vocabulary that misses almost every word of the data
    tok_dir = tmp_path / "tok"
    word_tokenizer(known).save_pretrained(tok_dir)
    words = [w for t in texts for w in t.split()]
    share = sum(w not in known for w in words) / len(words)
    assert share > 0.5
    out = tmp_path / "o"
    # the model's embedding has room for every id of this tokenizer
    assert _evaluate(workdir, out, "--tokenizer", str(tok_dir)) == 1
    line = _error(capsys)
    assert "unknown" in line and f"{round(100 * share)}%" in line and "--tokenizer" in line
    assert not out.exists()


def test_empty_tokenizer_is_refused_by_the_library(workdir, tmp_path):
    """transformers builds a tokenizer of special tokens only from a folder without tokenizer files."""
    from transformers import AutoTokenizer

    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(workdir / "model" / "config.json", bare / "config.json")
    empty = AutoTokenizer.from_pretrained(bare)
    model = tiny_model("bert", num_labels=2, vocab_size=len(word_tokenizer()), seed=0)
    with pytest.raises(PipelineError, match="100% of the tokens of the first 30 texts to its unknown token"):
        run_evaluation(model, empty, make_task(30, seed=3).texts, out_dir=tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_tokenizer_larger_than_the_embedding_is_refused(workdir, tmp_path, capsys):
    big = tmp_path / "big"
    extra = [f"extra{i}" for i in range(400)]
    word_tokenizer(task_vocabulary() + extra).save_pretrained(big)
    rows = tiny_model("bert", num_labels=2, vocab_size=len(word_tokenizer()), seed=0).get_input_embeddings()
    out = tmp_path / "o"
    data = tmp_path / "d.csv"
    data.write_text("text,label\ngood day extra399,1\nbad day,0\n")
    assert _evaluate(workdir, out, "--tokenizer", str(big), data=data) == 1
    line = _error(capsys)
    assert "--tokenizer" in line and str(len(task_vocabulary()) + 400 + 5) in line
    assert str(rows.num_embeddings) in line
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ locking


_HOLD_LOCK = textwrap.dedent("""
    import fcntl, sys, time
    f = open(sys.argv[1], "a")
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.read()
""")

_TRY_LOCK = textwrap.dedent("""
    import fcntl, sys
    f = open(sys.argv[1], "a")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print("busy")
    else:
        print("free")
""")


@posix_only
def test_second_writer_is_refused(workdir, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(out / ".lock")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert _evaluate(workdir, out) == 1
        line = _error(capsys)
        assert "another" in line and str(out) in line
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # the holder is gone: its lock went with it
    assert _evaluate(workdir, out) == 0


@posix_only
def test_a_running_evaluation_holds_the_lock(workdir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    seen = []
    original = runner.ChunkRunner.run

    def probe(self, index, *args, **kwargs):
        res = subprocess.run([sys.executable, "-c", _TRY_LOCK, str(out / ".lock")], capture_output=True,
                             text=True, timeout=60)
        seen.append(res.stdout.strip())
        return original(self, index, *args, **kwargs)

    monkeypatch.setattr(runner.ChunkRunner, "run", probe)
    assert _evaluate(workdir, out, "--limit", "10") == 0
    assert seen == ["busy"]
    res = subprocess.run([sys.executable, "-c", _TRY_LOCK, str(out / ".lock")], capture_output=True, text=True,
                         timeout=60)
    assert res.stdout.strip() == "free"  # released when the run ends


# ------------------------------------------------------------------------------------------------ chunk checksums


def test_edited_chunk_line_is_refused(workdir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    _interrupted_run(workdir, out, monkeypatch, capsys)
    path = out / "partial.jsonl"
    header, chunk = path.read_text().splitlines()
    rec = json.loads(chunk)
    assert rec["index"] == 0
    rec["examples"][0]["prediction"] = 1 - rec["examples"][0]["prediction"]  # valid JSON, a different number
    path.write_text(header + "\n" + json.dumps(rec) + "\n")
    assert _evaluate(workdir, out, "--resume") == 1
    line = _error(capsys)
    assert "chunk 0" in line and str(path) in line and "checksum" in line
    assert not (out / "results.json").exists()


def test_old_format_partial_file_is_refused(workdir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    _interrupted_run(workdir, out, monkeypatch, capsys)
    path = out / "partial.jsonl"
    recs = [json.loads(ln) for ln in path.read_text().splitlines()]
    recs[0]["format"] = "attnfaith.partial/1"  # what earlier versions wrote: no checksums
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "sha256"}) + "\n" for r in recs))
    assert _evaluate(workdir, out, "--resume") == 1
    line = _error(capsys)
    assert "attnfaith.partial/1" in line and "--overwrite" in line


# ------------------------------------------------------------------------------------------------ early errors


def _nothing_written(out: Path) -> bool:
    return not out.exists()


def test_max_length_above_the_model_positions(workdir, tmp_path, capsys):
    from transformers import AutoConfig

    limit = AutoConfig.from_pretrained(workdir / "model").max_position_embeddings
    out = tmp_path / "o"
    assert _evaluate(workdir, out, "--max-length", str(limit + 1)) == 1
    line = _error(capsys)
    assert "--max-length" in line and str(limit) in line
    assert _nothing_written(out)
    assert _evaluate(workdir, out, "--max-length", "0") == 2
    assert "--max-length" in _error(capsys)
    assert _evaluate(workdir, out, "--max-length", "2") == 1  # [CLS] and [SEP] leave no room for a word
    assert "--max-length" in _error(capsys)
    assert _nothing_written(out)


def test_roberta_positions_start_after_the_padding_index():
    model = tiny_model("roberta", num_labels=2)
    pad = model.config.pad_token_id
    assert max_positions(model)[0] == model.config.max_position_embeddings - pad - 1


@pytest.mark.parametrize("flag,value", [("--seed", "-5"), ("--seed", str(2**32)), ("--seed", "1e20"),
                                        ("--seed", "100000000000000000000"), ("--limit", "0"),
                                        ("--batch-size", "0"), ("--permutations", "0"), ("--ig-steps", "0"),
                                        ("--n-random", "0"), ("--variants-per-forward", "0"), ("--threads", "0"),
                                        ("--adversarial-steps", "-1")])
def test_bad_integers_are_usage_errors(workdir, tmp_path, capsys, flag, value):
    out = tmp_path / "o"
    assert _evaluate(workdir, out, flag, value) == 2
    assert flag in _error(capsys)
    assert _nothing_written(out)


def test_seed_range_in_the_library(tmp_path):
    for seed in (-5, 2**32, 10**20):
        with pytest.raises(PipelineError, match="seed"):
            EvaluationConfig(seed=seed)
    assert EvaluationConfig(seed=2**32 - 1).seed == 2**32 - 1


def test_float_label_names_column_line_value(workdir, tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("text,gold\ngood day,1\nbad day,0.5\nthe river,0\n")
    out = tmp_path / "o"
    assert _evaluate(workdir, out, "--label-column", "gold", data=data) == 1
    line = _error(capsys)
    assert f"{data}:3" in line and "'gold'" in line and "0.5" in line and "integer class index" in line
    assert "positive" in line  # the label names the model accepts
    jl = tmp_path / "d.jsonl"
    jl.write_text('{"text": "good day", "y": 1.0}\n{"text": "bad day", "y": 0.25}\n')
    assert _evaluate(workdir, out, "--label-column", "y", data=jl) == 1
    line = _error(capsys)
    assert f"{jl}:2" in line and "0.25" in line and "'y'" in line
    assert _nothing_written(out)


def test_integer_labels_as_floats_still_work(workdir, tmp_path):
    jl = tmp_path / "d.jsonl"
    jl.write_text('{"text": "good day", "y": 1.0}\n{"text": "bad day", "y": 0}\n{"text": "a day", "y": "1"}\n')
    out = tmp_path / "o"
    assert _evaluate(workdir, out, "--label-column", "y", data=jl) == 0
    assert [e["label"] for e in json.loads((out / "results.json").read_text())["examples"]] == [1, 0, 1]


@pytest.mark.parametrize("flag", ["--model", "--tokenizer"])
def test_missing_model_or_tokenizer_folder(workdir, tmp_path, capsys, flag):
    missing = tmp_path / "no-such-folder"
    out = tmp_path / "o"
    if flag == "--model":
        assert _evaluate(workdir, out, model=missing) == 1
    else:
        assert _evaluate(workdir, out, "--tokenizer", str(missing)) == 1
    line = _error(capsys)
    assert flag in line and "no such folder" in line and str(missing) in line and "Repo id" not in line
    assert _nothing_written(out)


def test_truncated_texts_are_counted_and_reported(workdir, tmp_path, capsys):
    max_length = 10
    texts = make_task(30, seed=3).texts
    n_long = sum(len(t.split()) + 2 > max_length for t in texts)  # [CLS] words [SEP]: one token per word
    assert 0 < n_long < len(texts)
    out = tmp_path / "o"
    assert _evaluate(workdir, out, "--max-length", str(max_length)) == 0
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and str(n_long) in warnings[0] and "--max-length" in warnings[0]
    run = json.loads((out / "results.json").read_text())
    assert run["data"]["n_truncated"] == n_long
    report = (out / "report.md").read_text()
    top = report.split("## Which explanation is faithful?")[0]
    assert f"{n_long} of {len(texts)}" in top and "truncated" in top


def test_truncation_warning_in_the_library(tmp_path):
    tok = word_tokenizer()
    model = tiny_model("bert", num_labels=2, vocab_size=len(tok), seed=0)
    texts = ["good day", "the good day is a bad day again"]  # 2 + 2 and 8 + 2 tokens
    with pytest.warns(UserWarning, match="1 of 2 texts are longer than --max-length 6"):
        run = run_evaluation(model, tok, texts, None, "attention,random", "erasure", tmp_path / "o", progress=False,
                             figures=False, max_length=6)
    assert run["data"]["n_truncated"] == 1 and run["data"]["truncated"] == [1]
    assert run["examples"][1]["n_tokens"] == 6 - 2


def test_remote_code_error_names_the_flag(workdir, tmp_path, capsys):
    remote = tmp_path / "remote"
    remote.mkdir()
    cfg = json.loads((workdir / "model" / "config.json").read_text())
    cfg["model_type"] = "my_custom_bert"
    cfg["auto_map"] = {"AutoConfig": "configuration_my.MyConfig",
                       "AutoModelForSequenceClassification": "modeling_my.MyModel"}
    (remote / "config.json").write_text(json.dumps(cfg))
    (remote / "configuration_my.py").write_text("raise SystemExit('remote code ran')\n")
    out = tmp_path / "o"
    assert _evaluate(workdir, out, model=remote) == 1
    line = _error(capsys)
    assert "--trust-remote-code" in line
    assert _nothing_written(out)


def test_non_utf8_data_names_path_and_line(workdir, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text,label\ngood day,1\nbad day,0\nthe \xff river,1\n")
    out = tmp_path / "o"
    assert _evaluate(workdir, out, data=bad) == 1
    line = _error(capsys)
    assert f"{bad}:4" in line and "UTF-8" in line and "0xff" in line
    jl = tmp_path / "bad.jsonl"
    jl.write_bytes(b'{"text": "good"}\n{"text": "b\xc3"}\n')
    assert _evaluate(workdir, out, data=jl) == 1
    assert f"{jl}:2" in _error(capsys)
    assert _nothing_written(out)
