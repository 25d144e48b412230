"""Texts and labels from a HuggingFace ``datasets`` dataset: a folder written by ``save_to_disk``, a folder of data
files (CSV, JSON Lines, Parquet...) or a dataset name on the Hub (``attnfaith evaluate --data``).

``datasets`` is the optional extra ``attnfaith[datasets]``; it is imported only here, when such data is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from attnfaith.reference.data import TextDataset
from attnfaith.study.config import PipelineError

__all__ = ["is_table_file", "read_hf_dataset", "one_line", "DATASETS_HINT", "TABLE_SUFFIXES"]

#: what ``pip`` needs for a dataset folder or name
DATASETS_HINT = "pip install 'attnfaith[datasets]'"
#: file extensions read as one table by :func:`attnfaith.reference.data.read_table`
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".json")


def is_table_file(ref: str) -> bool:
    """Whether ``--data ref`` is a table file (an existing file, or a name with a table extension, which is then
    reported missing) rather than a dataset folder or a Hub dataset name."""
    p = Path(ref)
    return p.is_file() or (not p.is_dir() and p.suffix.lower() in TABLE_SUFFIXES)


def _import_datasets(ref: str):
    try:
        import datasets
    except ImportError:
        raise PipelineError(f"--data {ref}: a dataset folder or name needs the datasets package: {DATASETS_HINT}"
                            ) from None
    return datasets


def _load(ref: str, config: str | None, split: str | None, revision: str | None, progress: bool):
    """The chosen split of the dataset ``ref`` (a ``Dataset``)."""
    datasets = _import_datasets(ref)
    if not progress:
        datasets.disable_progress_bars()
    folder = Path(ref)
    saved = folder.is_dir() and any((folder / f).is_file() for f in ("dataset_dict.json", "state.json"))
    try:
        if saved:
            ds = datasets.load_from_disk(str(folder))
        else:
            kw: dict[str, Any] = {"revision": revision} if revision else {}
            ds = datasets.load_dataset(str(ref), config, **kw)
    except Exception as exc:  # FileNotFoundError, ConnectionError (offline), ValueError (config)...
        where = "" if folder.exists() else " (no such folder here; tried as a Hub dataset name)"
        raise PipelineError(f"cannot load --data {ref}: {type(exc).__name__}: {one_line(exc)}{where}") from None
    if isinstance(ds, datasets.DatasetDict) or hasattr(ds, "keys"):
        names = list(ds.keys())
        if split is None:
            if len(names) != 1:
                raise PipelineError(f"--data {ref} has the splits {', '.join(names)}: choose one with --split")
            split = names[0]
        if split not in names:
            raise PipelineError(f"--data {ref} has no split {split!r}; it has {', '.join(names)}")
        ds = ds[split]
    return ds


def one_line(exc: BaseException, limit: int = 400) -> str:
    """The first line of an exception's message (its type's name when empty), cut to ``limit`` characters."""
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0].strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_hf_dataset(ref: str, text_column: str, label_column: str | None = None, *, config: str | None = None,
                    split: str | None = None, revision: str | None = None, extra_columns: Sequence[str] = (),
                    progress: bool = True) -> tuple[TextDataset, dict[str, list[Any]]]:
    """The texts (and labels) of one split of a ``datasets`` dataset, and the values of ``extra_columns``.

    Args:
        ref: a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, a folder of data files
            (``datasets.load_dataset(folder)``), or a dataset name on the Hub.
        text_column, label_column: the columns; labels are class indices (a ``ClassLabel`` or integer column) or
            strings (numbered in sorted order, their names kept in ``label_names`` for the model's ``label2id``).
        config: the dataset's configuration (``--dataset-config``, e.g. ``sst2`` of ``glue``).
        split: the split (``--split``); may be omitted when the dataset has one.
        revision: the dataset's revision on the Hub.
        extra_columns: further columns whose values are returned (the rationales).
        progress: False turns ``datasets``' progress bars off (for the rest of the process).

    Raises:
        PipelineError: ``datasets`` missing (with the install hint), a dataset that cannot be loaded, an unknown
            split or column, an empty text or label.
    """
    ds = _load(ref, config, split, revision, progress)
    columns = list(ds.column_names)
    for flag, col in (("--text-column", text_column), ("--label-column", label_column),
                      *(("--rationale-column", c) for c in extra_columns)):
        if col is not None and col not in columns:
            raise PipelineError(f"--data {ref}: no column {col!r} ({flag}); it has {', '.join(columns)}")
    texts = list(ds[text_column])
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise PipelineError(f"--data {ref} (data row {bad + 1}): column {text_column!r} holds "
                            f"{type(texts[bad]).__name__}, not text")
    labels = label_names = None
    if label_column is not None:
        values = list(ds[label_column])
        missing = next((i for i, v in enumerate(values) if v is None or v == ""), None)
        if missing is not None:
            raise PipelineError(f"--data {ref} (data row {missing + 1}): empty label in column {label_column!r}")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            labels = list(values)
        else:
            label_names = sorted({str(v) for v in values})
            index = {name: i for i, name in enumerate(label_names)}
            labels = [index[str(v)] for v in values]
    extras = {c: list(ds[c]) for c in extra_columns}
    return TextDataset(texts, labels, label_names=label_names, source=str(ref)), extras
