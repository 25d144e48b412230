"""The data of ``attnfaith evaluate``: a table file, a ``datasets`` folder or a Hub dataset name, its optional
rationales, and its labels as classes of the model.

Every problem is a :class:`attnfaith.study.PipelineError` (one line; the command line exits with status 1).
"""

from __future__ import annotations

from typing import Any, Mapping

from attnfaith.reference.data import TextDataset, read_table
from attnfaith.study.config import PipelineError
from attnfaith.study.hf_data import is_table_file, one_line, read_hf_dataset

__all__ = ["read_data", "map_labels"]


def read_data(ref: str, *, text_column: str, label_column: str | None = None, split: str | None = None,
              split_column: str | None = None, rationale_column: str | None = None,
              dataset_config: str | None = None, limit: int | None = None, progress: bool = True,
              ) -> tuple[TextDataset, list[list[int]] | None, dict[str, Any]]:
    """The evaluated rows of ``--data ref``: the dataset, the rationales (word indices per row) or None, and what
    ``results.json`` records about the data.

    A table file (``.csv``, ``.tsv``, ``.jsonl``...) is read by :func:`attnfaith.reference.data.read_table`, with
    ``split`` the value of its split column; anything else (a folder, a name) is a ``datasets`` dataset
    (:func:`attnfaith.study.hf_data.read_hf_dataset`), with ``split`` its split and ``dataset_config`` its
    configuration. ``limit``: the first ``limit`` rows; ``progress``: ``datasets``' progress bars."""
    from attnfaith._text import parse_index_list

    if is_table_file(ref):
        if dataset_config is not None:
            raise PipelineError(f"--dataset-config is for a datasets folder or name, not the table file {ref}")
        try:
            ds = read_table(ref, text_column=text_column, label_column=label_column, split_column=split_column,
                            split=split)
            cells = None
            if rationale_column:
                cells = read_table(ref, text_column=rationale_column, label_column=None, split_column=split_column,
                                   split=split).texts
        except (OSError, ValueError, UnicodeError) as exc:
            raise PipelineError(f"cannot read --data: {one_line(exc)}") from None
        kind = "table"
    else:
        if split_column is not None:
            raise PipelineError(f"--split-column is for a table file; --data {ref} is a dataset: --split names its "
                                "split")
        ds, extra = read_hf_dataset(ref, text_column, label_column, config=dataset_config, split=split,
                                    extra_columns=(rationale_column,) if rationale_column else (), progress=progress)
        cells = extra.get(rationale_column) if rationale_column else None
        kind = "datasets"
    if len(ds) == 0:
        raise PipelineError(f"--data {ref}: no rows" + (f" in split {split!r}" if split else ""))
    rationales = [parse_index_list(v) for v in cells] if cells is not None else None
    if limit is not None:
        ds = ds.subset(range(min(limit, len(ds))))
        rationales = rationales[: len(ds)] if rationales is not None else None
    info = {"path": str(ref), "kind": kind, "text_column": text_column, "label_column": label_column,
            "split": split, "limit": limit, "rationale_column": rationale_column}
    if kind == "datasets":
        info["dataset_config"] = dataset_config
    return ds, rationales, info


def _class_index(value: str, label2id: Mapping[str, int], n_classes: int) -> int | None:
    """The model's class for a label cell: one of its label names (exactly, else ignoring case), else an integer
    class index (``1``, ``1.0``) in ``0 .. n_classes - 1``; None for anything else."""
    idx = label2id.get(value)
    if idx is None:
        idx = {k.lower(): v for k, v in label2id.items()}.get(value.lower())
    if idx is not None:
        return idx
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number.is_integer() and 0 <= number < n_classes else None


def map_labels(ds, model, path: str, column: str) -> list[int]:
    """The dataset's labels as the model's class indices (label names through ``config.label2id``).

    :class:`~attnfaith.study.PipelineError` for the first row (in file order) whose label is not a class of the model, naming the file,
    its line, the column, the value and what is expected.
    """
    config = getattr(model, "config", None)
    n = int(getattr(config, "num_labels", 0) or 0)
    n_classes = max(n, 2) if n == 1 else n
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    label2id = {str(k): int(v) for k, v in (getattr(config, "label2id", None) or {}).items()}
    classes = ", ".join(f"{i}={id2label.get(i, i)}" for i in range(n_classes))
    expected = f"expected an integer class index 0..{n_classes - 1} or a label name of the model ({classes})"
    labels = []
    for row, y in enumerate(ds.labels):
        where = f"{path}:{ds.lines[row]}" if ds.lines is not None else f"{path} (data row {row + 1})"
        if ds.label_names is None:
            if not 0 <= y < n_classes:
                raise PipelineError(f"{where}: label {y} is outside the model's classes (column {column!r}): "
                                    f"{expected}")
            labels.append(y)
            continue
        value = ds.label_names[y]
        idx = _class_index(value, label2id, n_classes)
        if idx is None or not 0 <= idx < n_classes:
            raise PipelineError(f"{where}: label {value!r} is not one of the model's classes (column {column!r}): "
                                f"{expected}")
        labels.append(idx)
    return labels
