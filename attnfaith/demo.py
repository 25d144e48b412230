"""``attnfaith demo``: a synthetic task whose rationale is known, two small models, the full report, offline.

The task (:func:`make_task`): sentences of neutral filler words with a few planted sentiment markers ("good",
"awful", ...). The label is the polarity of the majority of the markers (positive: 1), so the markers are the whole
rationale and their positions are known. Two models are trained on it in seconds:

* a tiny BERT built from a config (2 layers, hidden 64, 4 heads) with a word-level tokenizer built in code
  (:func:`word_tokenizer`), fine-tuned with :func:`attnfaith.reference.training.fine_tune_hf`;
* Jain & Wallace's BiLSTM with additive attention (:class:`attnfaith.reference.models.BiLSTMAttentionClassifier`) over a
  :class:`attnfaith.reference.vocabulary.Vocabulary`, trained with :func:`attnfaith.reference.training.train_classifier`.

Both are evaluated by :func:`attnfaith.study.run_evaluation` (the code behind ``attnfaith evaluate``), with the
planted markers as the rationale: the report adds each method's rationale recovery, the precision@k of its top-k
tokens (k = the number of marker tokens of the example), and the rationale itself as an oracle method
(``known_rationale``) beside the others. The evaluators are the defaults of ``attnfaith evaluate`` plus Edin et al.'s
normalised AOPC. Nothing is downloaded.
"""

from __future__ import annotations

import csv
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = [
    "FILLER",
    "POSITIVE",
    "NEGATIVE",
    "SyntheticTask",
    "make_task",
    "word_tokenizer",
    "tiny_bert",
    "train_demo_bert",
    "train_demo_bilstm",
    "run_demo",
]

#: neutral filler words (frequent English function and content words with no sentiment)
FILLER = tuple("""
the a of and to in that it was for on as with his they at be this from have or by one had not but what all were
when we there can an your which their said if do will each about how up out them then she many some so these would
other into has more her two like him see time could make than first been its who now people my made over did down
only way find use may water long little very after words called just where most know table river window chair
road paper garden city morning evening train house door street letter music
""".split())
POSITIVE = ("good", "great", "excellent", "wonderful", "superb")
NEGATIVE = ("bad", "awful", "terrible", "poor", "dreadful")

LABEL_NAMES = ("negative", "positive")


@dataclass
class SyntheticTask:
    """Texts, labels (1 = positive) and the word positions of the planted markers (the known rationale)."""

    texts: list[str]
    labels: list[int]
    rationales: list[list[int]]
    seed: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def to_csv(self, path: str | Path) -> None:
        """Write ``text,label,rationale`` (rationale: space-separated word indices)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label", "rationale"])
            for t, y, r in zip(self.texts, self.labels, self.rationales):
                w.writerow([t, y, " ".join(map(str, r))])


def make_task(n: int, seed: int = 0, *, min_len: int = 8, max_len: int = 16, max_markers: int = 3,
              distractor_prob: float = 0.25) -> SyntheticTask:
    """``n`` sentences of ``min_len..max_len`` words.

    Each sentence draws its label uniformly, then ``1..max_markers`` markers of that polarity at random word
    positions; with probability ``distractor_prob`` (and at least two such markers) it also gets fewer markers of the
    opposite polarity. The label is the majority polarity of the markers; the rationale is every marker position.
    Seeded with ``random.Random(seed)``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 1 <= max_markers <= min_len:
        raise ValueError(f"max_markers must be in 1..min_len, got {max_markers}")
    rng = random.Random(seed)
    texts, labels, rationales = [], [], []
    for _ in range(n):
        y = rng.randrange(2)
        length = rng.randint(min_len, max_len)
        words = [rng.choice(FILLER) for _ in range(length)]
        k = rng.randint(1, max_markers)
        k_other = rng.randint(1, k - 1) if k >= 2 and rng.random() < distractor_prob else 0
        positions = sorted(rng.sample(range(length), k + k_other))
        rng.shuffle(positions)
        major = POSITIVE if y == 1 else NEGATIVE
        minor = NEGATIVE if y == 1 else POSITIVE
        for i, p in enumerate(positions):
            words[p] = rng.choice(major if i < k else minor)
        texts.append(" ".join(words))
        labels.append(y)
        rationales.append(sorted(positions))
    return SyntheticTask(texts, labels, rationales, seed,
                         dict(min_len=min_len, max_len=max_len, max_markers=max_markers,
                              distractor_prob=distractor_prob))


def task_vocabulary() -> list[str]:
    return sorted(set(FILLER) | set(POSITIVE) | set(NEGATIVE))


def word_tokenizer(words: Sequence[str] | None = None):
    """A BERT-style word-level fast tokenizer built in code: ``[CLS] w1 … wn [SEP]``, whitespace split, ids
    ``[PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4`` then the words. No download."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {t: i for i, t in enumerate(specials + list(words if words is not None else task_vocabulary()))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)


def tiny_bert(vocab_size: int, seed: int = 0, *, hidden: int = 64, layers: int = 2, heads: int = 4):
    """A small ``BertForSequenceClassification`` built from a config (random init under ``seed``)."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=2 * hidden, max_position_embeddings=64, type_vocab_size=2, num_labels=2,
        id2label=dict(enumerate(LABEL_NAMES)), label2id={n: i for i, n in enumerate(LABEL_NAMES)},
        pad_token_id=0, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, classifier_dropout=0.1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
    return model.eval()


def train_demo_bert(train: SyntheticTask, dev: SyntheticTask, seed: int = 0, *, epochs: int = 2,
                    progress: bool = False):
    """Tokenizer + tiny BERT fine-tuned on ``train`` (best dev epoch kept); returns ``(model, tokenizer, result)``."""
    from attnfaith.reference.training import fine_tune_hf

    tokenizer = word_tokenizer()
    model = tiny_bert(len(tokenizer), seed)
    result = fine_tune_hf(model, tokenizer, train.texts, train.labels, dev.texts, dev.labels, epochs=epochs, lr=2e-3,
                          batch_size=32, max_length=64, seed=seed, warmup_ratio=0.1, progress=progress)
    return model.eval(), tokenizer, result


def train_demo_bilstm(train: SyntheticTask, dev: SyntheticTask, seed: int = 0, *, epochs: int = 4,
                      progress: bool = False):
    """Vocabulary + Jain & Wallace's BiLSTM with additive attention (small: 32-d embeddings, 32 units per
    direction) trained on ``train``; returns ``(model, vocabulary, result)``."""
    from attnfaith.reference.data import TextDataset
    from attnfaith.reference.vocabulary import Vocabulary
    from attnfaith.reference.models import BiLSTMAttentionClassifier
    from attnfaith.reference.training import train_classifier

    vocab = Vocabulary.build(train.texts)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BiLSTMAttentionClassifier(len(vocab), num_labels=2, embed_dim=32, hidden_dim=32)
    tr = vocab.encode_dataset(TextDataset(train.texts, train.labels))
    dv = vocab.encode_dataset(TextDataset(dev.texts, dev.labels))
    result = train_classifier(model, tr, dv, epochs=epochs, lr=1e-2, batch_size=32, seed=seed,
                              early_stopping_patience=None, progress=progress)
    return model.eval(), vocab, result


def _write_index(out: Path, task: dict, runs: dict[str, dict], timings: dict[str, float]) -> Path:
    from attnfaith.study.registry import method_label
    from attnfaith.study.report import summary_table

    lines = ["# attnfaith demo: which explanation recovers a known rationale?", ""]
    lines += [
        "A synthetic sentiment task generated in code: sentences of "
        f"{task['min_len']}–{task['max_len']} neutral filler words with 1–{task['max_markers']} planted markers "
        f"({', '.join(POSITIVE)} / {', '.join(NEGATIVE)}); the label is the polarity of the majority of the markers, "
        "so the markers are the rationale and their positions are known. "
        f"{task['n_train']} training and {task['n_eval']} evaluated sentences (seed {task['seed']}).", "",
        "The column *rationale P@k* is the share of a method's top-k tokens that are planted markers (k = number of "
        "markers in the sentence; random ≈ k / length). The other columns are the faithfulness tests of the papers; "
        "see each model's report for the intervals' details, the tables of Jain & Wallace and Serrano & Smith, and "
        "the figures.", "",
    ]
    for name, run in runs.items():
        acc = run["summary"].get("accuracy") or {}
        title = {"bert": "Tiny BERT (2 layers, hidden 64, 4 heads, built from a config)",
                 "bilstm": "BiLSTM + additive attention (Jain & Wallace's model)"}[name]
        lines += [f"## {title}", ""]
        if acc.get("mean") is not None:
            lines.append(f"Accuracy on the evaluated sentences: {100 * acc['mean']:.1f}%. "
                         f"Full report: [{name}/report.md]({name}/report.md).")
            lines.append("")
        lines += [summary_table(run), ""]
        for m, v in run["summary"]["verdicts"].items():
            lines.append(f"- **{method_label(m)}**: {v}")
        lines.append("")
        figs = run.get("figures") or {}
        for key in ("erasure_curves", "heatmap_attention"):
            if key in figs:
                lines += [f"![{figs[key]['title']}]({name}/{figs[key]['path']})", ""]
    lines += ["## Reproduce", "", "```",
              "attnfaith demo --out " + str(out),
              f"attnfaith evaluate --model {out}/bert/model --data {out}/data/eval.csv --text-column text "
              f"--label-column label --rationale-column rationale {task['evaluate_flags']} --out {out}/bert-again",
              "```", "", "The second command evaluates the saved tiny BERT from the files alone, with the demo's "
              "settings: its `results.json` has the same per-example numbers as `bert/results.json`.", ""]
    lines.append("Timings (seconds): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()) + ".")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_demo(out_dir: str | Path = "out/demo", *, seed: int = 0, n_train: int = 1200, n_eval: int = 120,
             models: Sequence[str] = ("bert", "bilstm"), quick: bool = False, progress: bool = True,
             evaluators: Sequence[str] | None = None) -> dict[str, Any]:
    """Generate the task, train the demo models, evaluate them, write ``out_dir/report.md``.

    ``quick``: much smaller sizes (tests). Returns ``{"report": path, "table": markdown, "runs": {name: run},
    "timings": {...}}``.
    """
    from attnfaith.reference.vocabulary import Vocabulary
    from attnfaith.study import EvaluationConfig, run_evaluation
    from attnfaith.study.report import summary_table

    t_all = time.perf_counter()
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"--out {out} exists and is not a folder")
        # replace an earlier demo (never a folder with anything else in it)
        known = {"report.md", "data", "bert", "bilstm", "bert-again"}
        unknown = [p.name for p in out.iterdir() if p.name not in known]
        if unknown:
            raise ValueError(f"--out {out} is not empty and does not hold an attnfaith demo ({', '.join(unknown[:3])}); "
                           "choose another folder")
        for name in ("bert", "bilstm", "data", "report.md"):
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    if quick:
        n_train, n_eval = min(n_train, 400), min(n_eval, 24)
    settings = dict(min_len=8, max_len=16, max_markers=3, distractor_prob=0.25)
    train = make_task(n_train, seed=seed, **settings)
    dev = make_task(max(40, n_eval // 2), seed=seed + 1, **settings)
    test = make_task(n_eval, seed=seed + 2, **settings)
    train.to_csv(out / "data" / "train.csv")
    test.to_csv(out / "data" / "eval.csv")
    timings: dict[str, float] = {}
    runs: dict[str, dict] = {}
    cfg = dict(batch_size=40, seed=seed, permutations=30 if quick else 100, ig_steps=16 if quick else 32,
               max_length=64)
    defaults = EvaluationConfig().evaluators
    # the default evaluators and Edin et al.'s normalised AOPC (not a default of `evaluate`: its bounds cost a beam
    # search per example, a few seconds on the demo's short sentences)
    evals = tuple(evaluators) if evaluators is not None else (*defaults, "normalized_aopc")
    for name in models:
        t0 = time.perf_counter()
        if name == "bert":
            model, tokenizer, _ = train_demo_bert(train, dev, seed, epochs=3 if quick else 2, progress=progress)
            from attnfaith.progress import suppress_progress_bars

            with suppress_progress_bars():  # save_pretrained draws a bar per shard
                model.save_pretrained(out / "bert" / "model")
            tokenizer.save_pretrained(out / "bert" / "model")
            title = "demo: tiny BERT on the planted-marker task"
        elif name == "bilstm":
            model, tokenizer, _ = train_demo_bilstm(train, dev, seed, epochs=2 if quick else 4, progress=progress)
            title = "demo: BiLSTM with additive attention on the planted-marker task"
        else:
            raise ValueError(f"unknown demo model {name!r}; choose bert and/or bilstm")
        timings[f"train {name}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        config = EvaluationConfig(evaluators=evals, **cfg)
        runs[name] = run_evaluation(
            model, tokenizer, test.texts, test.labels, out_dir=out / name, config=config,
            rationales=test.rationales, overwrite=True, progress=progress, title=title,
            model_source=f"attnfaith.demo ({name})",
            data_info={"path": str(out / "data" / "eval.csv"), "synthetic": True, **settings},
        )
        timings[f"evaluate {name}"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    flags = (f"--batch-size {cfg['batch_size']} --max-length {cfg['max_length']} --permutations "
             f"{cfg['permutations']} --ig-steps {cfg['ig_steps']} --seed {seed}")
    if evals != defaults:
        flags += f" --evaluators {','.join(evals)}"
    task = dict(settings, n_train=n_train, n_eval=n_eval, seed=seed, evaluate_flags=flags)
    report = _write_index(out, task, runs, timings)
    tables = []
    for name, run in runs.items():
        tables.append(f"{name}:\n{summary_table(run)}")
    return {"report": str(report), "table": "\n\n".join(tables), "runs": runs, "timings": timings}
