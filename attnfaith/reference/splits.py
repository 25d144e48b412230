"""The replication recipe's train / dev / test splits of a labelled text table (:func:`load_splits`).

Any CSV / TSV / JSONL table with a text and a label column (:func:`attnfaith.reference.data.read_table`). With a
split column, its ``train`` (``training``) / ``dev`` (``validation``, ``valid``, ``val``) / ``test`` rows are used;
separate ``dev_data`` / ``test_data`` files may be given instead; whatever is missing is carved out of the training
rows with a seeded shuffle (test: 10 %, dev: 10 %, at most 1,000 rows).

For the reference models every text is then preprocessed (``cfg.preprocessing``,
:class:`attnfaith.reference.preprocessing.Preprocessing`): the splits hold the cleaned texts, space-separated tokens,
as Jain & Wallace's CSV files do; a HuggingFace model gets the texts as read. Tokens are counted in those texts
(whitespace words): ``min_tokens`` drops shorter texts and ``max_tokens`` longer ones from every split (Jain &
Wallace's SST filter is ``min_tokens=6``, :func:`attnfaith.reference.data.sst_min_length_filter`; IMDB ``< 400``,
``max_tokens=399``), ``min_train_tokens`` drops shorter texts from train and dev only, and ``max_train`` subsamples
the training rows (seeded).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

from attnfaith.reference.config import ReplicationConfig, resolve_data_path
from attnfaith.reference.data import TextDataset, read_table

__all__ = ["Splits", "load_splits"]

_TRAIN_NAMES = ("train", "training")
_DEV_NAMES = ("dev", "validation", "valid", "val")
_TEST_NAMES = ("test",)


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


def _min_tokens(ds: TextDataset, n: int, most: int | None = None) -> TextDataset:
    """The rows of ``ds`` with at least ``max(n, 1)`` (never an empty text) and at most ``most`` whitespace
    tokens."""
    least = max(int(n), 1)
    return ds.subset([i for i, t in enumerate(ds.texts)
                      if least <= len(t.split()) and (most is None or len(t.split()) <= most)])


def load_splits(cfg: ReplicationConfig) -> Splits:
    """Read the data of ``cfg`` and return train / dev / test (see the module docstring)."""
    path = resolve_data_path(cfg.data, cfg.data_root)
    main_ds = read_table(path, cfg.text_column, cfg.label_column, cfg.split_column)
    names = main_ds.label_names
    notes = [f"data: {path}"]

    def read_extra(p: str | None) -> TextDataset | None:
        if p is None:
            return None
        rp = resolve_data_path(p, cfg.data_root)
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
    if cfg.is_reference:
        prep = cfg.preprocessing
        n_raw = len({w for t in train.texts for w in t.split()})
        train, dev, test = (d.with_texts(prep.clean_all(d.texts)) for d in (train, dev, test))
        notes.append(f"preprocessing: {prep.describe()} (distinct training words {n_raw} -> "
                     f"{len({w for t in train.texts for w in t.split()})})")
    before = (len(train), len(dev), len(test))
    train, dev, test = (_min_tokens(d, cfg.min_tokens, cfg.max_tokens) for d in (train, dev, test))
    if cfg.min_tokens > 0 or cfg.max_tokens is not None:
        bounds = " and ".join(b for b in (f">= {cfg.min_tokens}" if cfg.min_tokens > 0 else "",
                                          f"<= {cfg.max_tokens}" if cfg.max_tokens is not None else "") if b)
        notes.append(
            f"kept texts with {bounds} {'tokens' if cfg.is_reference else 'whitespace tokens'}: train "
            f"{before[0]} -> {len(train)}, dev {before[1]} -> {len(dev)}, test {before[2]} -> {len(test)}"
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
