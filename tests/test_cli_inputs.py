"""``attnfaith evaluate`` with inputs the way users hold them: a user's Captum method from ``--methods
module:factory``, a HuggingFace ``datasets`` folder as ``--data``, ``--device auto`` and ``--dtype``; ``attnfaith
report DIR`` redrawing a run from its ``results.json``; and ``attnfaith.evaluate``, the one-call Python API.
References: Captum called directly on the same tokenizer batch, the CSV run of the same rows, the first report."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import attnfaith
from attnfaith.cli import main
from attnfaith.demo import make_task, word_tokenizer
from attnfaith.testing import tiny_model

FAST = ["--quiet", "--threads", "1", "--permutations", "4", "--ig-steps", "4", "--batch-size", "4",
        "--evaluators", "kendall,erasure", "--erasure-levels", "token"]

FACTORY = '''
from captum.attr import Saliency


def saliency(model):
    forward = lambda inputs_embeds, mask: model(inputs_embeds=inputs_embeds, attention_mask=mask).logits.softmax(-1)
    return Saliency(forward)


not_callable = 3
'''


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli_inputs")
    tok = word_tokenizer()
    model = tiny_model("bert", num_labels=2, vocab_size=len(tok), seed=0)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    make_task(6, seed=3).to_csv(root / "data.csv")
    (root / "my_factories.py").write_text(textwrap.dedent(FACTORY))
    return root


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _run(workdir, out, *extra, data=None) -> int:
    return main(["evaluate", "--model", str(workdir / "model"), "--data", str(data or workdir / "data.csv"),
                 "--label-column", "label", "--out", str(out), *FAST, *extra])


@pytest.fixture(scope="module")
def factory_run(workdir) -> Path:
    sys.path.insert(0, str(workdir))
    try:
        out = workdir / "factory-run"
        assert _run(workdir, out, "--methods", "attention,my_factories:saliency,random", "--no-figures") == 0
    finally:
        sys.path.remove(str(workdir))
    return out


def test_factory_method_scores_are_captums(workdir, factory_run):
    from captum.attr import Saliency
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run = json.loads((factory_run / "results.json").read_text())
    assert run["config"]["methods"] == ["attention", "random", "saliency"]
    assert "saliency" in run["summary"]["verdicts"]
    model = AutoModelForSequenceClassification.from_pretrained(workdir / "model").eval()
    tok = AutoTokenizer.from_pretrained(workdir / "model")
    for ex in run["examples"][:3]:
        enc = tok([ex["text"]], return_tensors="pt", return_special_tokens_mask=True)
        embeds = model.get_input_embeddings()(enc["input_ids"]).detach().requires_grad_(True)
        forward = lambda e, m: model(inputs_embeds=e, attention_mask=m).logits.softmax(-1)  # noqa: E731
        pred = int(model(**{k: v for k, v in enc.items() if k != "special_tokens_mask"}).logits.argmax(-1))
        expected = Saliency(forward).attribute(embeds, target=pred, additional_forward_args=(enc["attention_mask"],))
        items = enc["special_tokens_mask"][0] == 0
        torch.testing.assert_close(torch.tensor(ex["scores"]["saliency"]), expected.sum(-1)[0][items].float(),
                                   rtol=1e-4, atol=1e-7)


def test_factory_errors(workdir, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(workdir))
    cases = {
        "no_such_module_xyz:f": "cannot import 'no_such_module_xyz'",
        "my_factories:missing": "has no 'missing'",
        "my_factories:not_callable": "not a callable factory",
        "attention=my_factories:saliency": "the name 'attention' is already a method",
        "bad name=my_factories:saliency": "not a usable method name",
    }
    for entry, message in cases.items():
        assert _run(workdir, tmp_path / "o", "--methods", entry) == 2
        assert message in _error(capsys)
        assert not (tmp_path / "o").exists()


def test_report_redraws_from_results(factory_run, capsys):
    before_report = (factory_run / "report.md").read_text()
    before = json.loads((factory_run / "results.json").read_text())
    (factory_run / "report.md").unlink()
    assert main(["report", str(factory_run)]) == 0  # also draws the figures the run skipped (--no-figures)
    assert "report: " in capsys.readouterr().out
    after = json.loads((factory_run / "results.json").read_text())
    assert after["examples"] == before["examples"] and after["summary"] == before["summary"]
    assert after["figures"] and all((factory_run / f["path"]).is_file() for f in after["figures"].values())
    report = (factory_run / "report.md").read_text()
    assert report.split("## Figures")[0] == before_report.split("## Figures")[0] or "figures" in report.lower()
    assert main(["report", str(factory_run), "--no-figures"]) == 0


def test_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert f"{tmp_path}: no results.json" in _error(capsys)
    (tmp_path / "partial.jsonl").write_text("{}\n")
    assert main(["report", str(tmp_path)]) == 1
    assert "not finished" in _error(capsys) and "--resume" in capsys.readouterr().err + "--resume"
    (tmp_path / "results.json").write_text('{"a": 1}')
    assert main(["report", str(tmp_path)]) == 1
    assert "not an attnfaith results file" in _error(capsys)


def test_device_auto_and_dtype(workdir, tmp_path):
    assert _run(workdir, tmp_path / "auto", "--methods", "attention", "--device", "auto", "--no-figures") == 0
    run = json.loads((tmp_path / "auto" / "results.json").read_text())
    assert run["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert _run(workdir, tmp_path / "bf16", "--methods", "attention", "--dtype", "bfloat16", "--no-figures") == 0
    run16 = json.loads((tmp_path / "bf16" / "results.json").read_text())
    assert run16["model"]["weights_sha256"] != run["model"]["weights_sha256"]  # other tensors: bfloat16
    assert [e["prediction"] for e in run16["examples"]] == [e["prediction"] for e in run["examples"]]


def test_dataset_folder_without_datasets_gives_the_install_hint(workdir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    folder = tmp_path / "ds"
    folder.mkdir()
    assert _run(workdir, tmp_path / "o", data=folder) == 1
    assert _error(capsys) == (f"attnfaith: error: --data {folder}: a dataset folder or name needs the datasets "
                              "package: pip install 'attnfaith[datasets]'")
    assert _run(workdir, tmp_path / "o", data="glue") == 1  # a Hub name
    assert "pip install 'attnfaith[datasets]'" in _error(capsys)


def test_dataset_folders_give_the_csv_numbers(workdir, tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    rows = (workdir / "data.csv").read_text()
    files = tmp_path / "files"
    files.mkdir()
    (files / "validation.csv").write_text(rows)
    (files / "train.csv").write_text(rows)
    saved = tmp_path / "saved"
    datasets.load_dataset(str(files)).save_to_disk(str(saved))
    capsys.readouterr()  # datasets' own progress bars
    assert _run(workdir, tmp_path / "csv", "--methods", "attention,random", "--no-figures") == 0
    reference = json.loads((tmp_path / "csv" / "results.json").read_text())["examples"]
    for name, folder in (("files", files), ("saved", saved)):
        out = tmp_path / f"run-{name}"
        assert _run(workdir, out, "--methods", "attention,random", "--no-figures", "--split", "validation",
                    "--rationale-column", "rationale", data=folder) == 0
        run = json.loads((out / "results.json").read_text())
        assert run["data"]["kind"] == "datasets" and run["data"]["split"] == "validation"
        assert [e["scores"] for e in run["examples"]] == [e["scores"] for e in reference]
        assert [e["text"] for e in run["examples"]] == [e["text"] for e in reference]
    assert _run(workdir, tmp_path / "o", data=saved) == 1  # two splits, none chosen
    assert "has the splits" in _error(capsys) and "--split" in capsys.readouterr().err + "--split"
    assert _run(workdir, tmp_path / "o", "--split", "test", data=saved) == 1
    assert "has no split 'test'" in _error(capsys)
    assert _run(workdir, tmp_path / "o", "--split", "validation", "--text-column", "sentence", data=saved) == 1
    assert "no column 'sentence' (--text-column)" in _error(capsys)


def test_evaluate_in_memory_is_the_run_on_disk(workdir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tok = word_tokenizer()
    model = tiny_model("bert", num_labels=2, vocab_size=len(tok), seed=0)
    task = make_task(6, seed=3)
    kw = dict(methods="attention,loo,random", evaluators="kendall,erasure", batch_size=4, seed=1)
    res = attnfaith.evaluate(model, tok, task.texts, task.labels, **kw)
    assert isinstance(res, attnfaith.StudyResults) and res.out_dir is None
    assert list(tmp_path.iterdir()) == []  # nothing left on disk
    disk = attnfaith.run_evaluation(model, tok, task.texts, task.labels, out_dir=tmp_path / "run", progress=False,
                                    figures=False, **kw)
    assert res["examples"] == disk["examples"] and res["summary"] == disk["summary"]
    assert res.verdicts == disk["summary"]["verdicts"] and "| leave-one-out |" in res.table()
    loaded = attnfaith.load_results(tmp_path / "run")
    assert loaded["examples"] == disk["examples"] and loaded.out_dir == tmp_path / "run"
    assert "# " in loaded.to_markdown()
    with pytest.raises(ValueError, match="needs out_dir"):
        attnfaith.evaluate(model, tok, task.texts, figures=True, **kw)
