"""The replication recipe's train / dev / test splits of a labelled text table (:func:`load_splits`).

Any CSV / TSV / JSONL table with a text and a label column (:func:`attnfaith.reference.data.read_table`). With a
split column, its ``train`` (``training``) / ``dev`` (``validation``, ``valid``, ``val``) / ``test`` rows are used;
separate ``dev_data`` / ``test_data`` files may be given instead; whatever is missing is carved out of the training
rows with a seeded shuffle (test: 10 %, dev: 10 %, at most 1,000 rows). ``min_tokens`` drops texts with fewer
whitespace tokens from every split (Jain & Wallace's SST filter is ``min_tokens=6``,
:func:`attnfaith.reference.data.sst_min_length_filter`), ``min_train_tokens`` from train and dev only, and
``max_train`` subsamples the training rows (seeded).
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


def _min_tokens(ds: TextDataset, n: int) -> TextDataset:
    if n <= 0:
        return ds.subset([i for i, t in enumerate(ds.texts) if t.split()])  # never an empty text
    return ds.subset([i for i, t in enumerate(ds.texts) if len(t.split()) >= n])


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
