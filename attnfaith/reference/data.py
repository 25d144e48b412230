"""Reading labelled text tables and turning them into tensors for the reference models or a HuggingFace tokenizer.

* :func:`read_table` reads CSV / TSV / JSONL into a :class:`TextDataset` (texts, integer labels, optional split);
* the word-level vocabulary of Jain & Wallace's models is :class:`attnfaith.reference.vocabulary.Vocabulary`;
* :func:`encode_for_hf` tokenizes for a HuggingFace model (with the special-tokens mask);
* :func:`sst_min_length_filter` is Jain & Wallace's SST filter (sentences of at least 6 tokens);
* :func:`data_dir` finds the shared data folder (``$ATTNFAITH_DATA`` or ``../shared/data`` next to the repository).
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

__all__ = [
    "TextDataset",
    "read_table",
    "encode_for_hf",
    "sst_min_length_filter",
    "data_dir",
]

_INT_RE = re.compile(r"^[+-]?\d+$")


# ---------------------------------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TextDataset:
    """Texts with optional integer labels and split names, all aligned by index.

    ``label_names[i]`` is the original value of label ``i`` when the file's labels were not integers (else None).
    ``lines[i]`` is where row ``i`` is in ``source`` (the line number; the record number, from 1, in a JSON list),
    for messages; None when not read from a file.
    """

    texts: list[str]
    labels: list[int] | None = None
    splits: list[str] | None = None
    label_names: list[str] | None = None
    source: str | None = field(default=None, compare=False)
    lines: list[int] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.texts = list(self.texts)
        if self.labels is not None:
            self.labels = [int(y) for y in self.labels]
            if len(self.labels) != len(self.texts):
                raise ValueError(f"{len(self.labels)} labels for {len(self.texts)} texts")
        if self.splits is not None:
            self.splits = [str(s) for s in self.splits]
            if len(self.splits) != len(self.texts):
                raise ValueError(f"{len(self.splits)} split names for {len(self.texts)} texts")
        if self.label_names is not None:
            self.label_names = [str(n) for n in self.label_names]
        if self.lines is not None:
            self.lines = [int(n) for n in self.lines]
            if len(self.lines) != len(self.texts):
                raise ValueError(f"{len(self.lines)} line numbers for {len(self.texts)} texts")

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> tuple[str, int | None]:
        return self.texts[i], (None if self.labels is None else self.labels[i])

    @property
    def num_labels(self) -> int | None:
        """``len(label_names)`` if known, else ``max(label) + 1`` (None without labels)."""
        if self.label_names is not None:
            return len(self.label_names)
        if not self.labels:
            return None
        return max(self.labels) + 1

    def subset(self, indices: Iterable[int]) -> "TextDataset":
        """The rows at ``indices`` (in that order)."""
        idx = [int(i) for i in indices]
        return TextDataset(
            texts=[self.texts[i] for i in idx],
            labels=None if self.labels is None else [self.labels[i] for i in idx],
            splits=None if self.splits is None else [self.splits[i] for i in idx],
            label_names=None if self.label_names is None else list(self.label_names),
            source=self.source,
            lines=None if self.lines is None else [self.lines[i] for i in idx],
        )

    def with_texts(self, texts: Sequence[str]) -> "TextDataset":
        """The same rows (labels, splits, lines) with other texts, e.g. preprocessed ones
        (:meth:`attnfaith.reference.preprocessing.Preprocessing.clean_all`)."""
        texts = list(texts)
        if len(texts) != len(self.texts):
            raise ValueError(f"texts: {len(texts)} texts for a dataset of {len(self.texts)} rows")
        return TextDataset(texts=texts, labels=self.labels, splits=self.splits, label_names=self.label_names,
                           source=self.source, lines=self.lines)

    def filter(self, split: str | Iterable[str]) -> "TextDataset":
        """The rows of one split (or of any of several splits)."""
        if self.splits is None:
            raise ValueError("this dataset has no split column; read it with split_column=...")
        wanted = {split} if isinstance(split, str) else set(split)
        rows = [i for i, s in enumerate(self.splits) if s in wanted]
        if not rows:
            raise ValueError(f"no rows with split {sorted(wanted)}; splits present: {sorted(set(self.splits))}")
        return self.subset(rows)


def _detect_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        f = fmt.lower().lstrip(".")
        aliases = {"csv": "csv", "tsv": "tsv", "tab": "tsv", "jsonl": "jsonl", "ndjson": "jsonl", "json": "json"}
        if f not in aliases:
            raise ValueError(f"unknown format {fmt!r}; use one of csv, tsv, jsonl, json")
        return aliases[f]
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".tsv", ".tab"):
        return "tsv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    raise ValueError(f"cannot tell the format of {path} from its extension; pass format='csv'|'tsv'|'jsonl'")


def _raise_missing_column(column: str, role: str, available: Sequence[str], path: Path, where: str = "") -> None:
    raise ValueError(
        f"{path}{where}: {role} column {column!r} not found; available columns: {', '.join(map(repr, available))}"
    )


def _read_delimited(path: Path, delimiter: str, quoting: int, columns: list[tuple[str, str]]):
    """Yield ``(line_number, {column: value})``. ``columns`` is ``[(name, role), ...]``."""
    limit = min(sys.maxsize, 2**31 - 1)
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: the file is empty (a header row is needed)") from None
        except csv.Error as e:
            raise ValueError(f"{path}:{reader.line_num}: cannot parse the header: {e}") from None
        header = [h.strip() for h in header]
        index = {}
        for name, role in columns:
            if name not in header:
                _raise_missing_column(name, role, header, path)
            index[name] = header.index(name)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise ValueError(f"{path}:{reader.line_num}: cannot parse the row: {e}") from None
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != len(header):
                raise ValueError(
                    f"{path}:{reader.line_num}: expected {len(header)} fields ({', '.join(header)}), "
                    f"got {len(row)}"
                    + (" (a TSV cell with a tab or newline?)" if delimiter == "\t" else " (unbalanced quotes?)")
                )
            yield reader.line_num, {name: row[i] for name, i in index.items()}


def _read_json_records(path: Path, fmt: str, columns: list[tuple[str, str]]):
    def check(obj, where):
        if not isinstance(obj, dict):
            raise ValueError(f"{path}{where}: expected a JSON object, got {type(obj).__name__}")
        out = {}
        for name, role in columns:
            if name not in obj:
                _raise_missing_column(name, role, list(obj), path, where)
            out[name] = obj[name]
        return out

    with open(path, encoding="utf-8-sig") as f:
        if fmt == "json":
            head = f.read(1)
            while head and head.isspace():
                head = f.read(1)
            f.seek(0)
            if head == "[":
                try:
                    records = json.load(f)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{e.lineno}: cannot parse JSON: {e.msg}") from None
                for i, obj in enumerate(records):
                    yield i + 1, check(obj, f" (record {i})")
                return
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: cannot parse JSON: {e.msg}") from None
            yield lineno, check(obj, f":{lineno}")


def _utf8_error(path: Path) -> str:
    """Where the first byte of ``path`` that is not UTF-8 is: ``"PATH:LINE: not UTF-8 text (byte 0xNN at byte
    offset K) ..."``, LINE counted from 1. Read in blocks, so a large file is not held in memory."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = newlines = 0  # bytes and newlines of the blocks before this one
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                # e.object is the decoder's buffer (the start of a character cut by the previous block: no
                # newline in it) followed by this block
                data = e.object
                bad = offset - (len(data) - len(block)) + e.start
                line = newlines + data[: e.start].count(b"\n") + 1
                return (f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at byte offset {bad}); save it "
                        "as UTF-8")
            if not block:
                return f"{path}: not UTF-8 text; save it as UTF-8"
            offset += len(block)
            newlines += block.count(b"\n")


def _as_int_label(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_RE.match(value.strip()):
        return int(value.strip())
    return None


def read_table(
    path: str | os.PathLike,
    text_column: str = "text",
    label_column: str | None = "label",
    split_column: str | None = None,
    split: str | Iterable[str] | None = None,
    *,
    format: str | None = None,
    label_names: Sequence[str] | None = None,
) -> TextDataset:
    """Read a CSV, TSV or JSONL table of texts and labels.

    The format comes from the extension (``.csv``, ``.tsv``/``.tab``, ``.jsonl``/``.ndjson``, ``.json`` = a JSON
    list or JSONL) or from ``format=``. CSV and TSV need a header row. TSV is read with quoting disabled
    (``csv.QUOTE_NONE``), because GLUE's SST-2 has literal quote characters in its sentences.

    Labels: if every label is an integer (``1``, ``"1"``, ``1.0``) they are kept as they are and ``label_names`` is
    None; otherwise the distinct values are sorted (as strings) and numbered 0, 1, ... and ``label_names`` keeps the
    originals. Pass ``label_names=`` to fix the mapping yourself (so that separate files agree); a label not in it
    raises ``ValueError``. The mapping is computed on the whole file, before ``split`` is applied, so splits of one
    file always agree. ``label_column=None`` reads unlabelled text.

    ``split`` keeps only rows whose ``split_column`` value is ``split`` (or one of several). If ``split`` is given
    without ``split_column``, a column named ``split`` or ``exp_split`` (Jain & Wallace's SST file) is used.

    Raises:
        FileNotFoundError: the file does not exist (the message has the path).
        ValueError: a column is missing (named, with the available ones listed), or a line cannot be parsed (path and
            line number), or a label/text is empty, or the file is not UTF-8 (path, line and byte offset of the first
            bad byte).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}" if not p.exists() else f"not a file: {p}")
    fmt = _detect_format(p, format)
    try:
        return _read_table_rows(p, fmt, text_column, label_column, split_column, split, label_names)
    except UnicodeDecodeError:
        raise ValueError(_utf8_error(p)) from None


def _read_table_rows(
    p: Path,
    fmt: str,
    text_column: str,
    label_column: str | None,
    split_column: str | None,
    split: str | Iterable[str] | None,
    label_names: Sequence[str] | None,
) -> TextDataset:
    """The body of :func:`read_table` once the file and its format are known."""
    if split is not None and split_column is None:
        split_column = "__auto_split__"
    columns: list[tuple[str, str]] = [(text_column, "text")]
    if label_column is not None:
        columns.append((label_column, "label"))

    def resolve_auto(available: Sequence[str]) -> str:
        for cand in ("split", "exp_split"):
            if cand in available:
                return cand
        raise ValueError(
            f"{p}: split={split!r} given without split_column and no 'split'/'exp_split' column; "
            f"available columns: {', '.join(map(repr, available))}"
        )

    if split_column == "__auto_split__":
        # peek at the columns to pick the split column
        if fmt in ("csv", "tsv"):
            with open(p, newline="", encoding="utf-8-sig") as f:
                quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
                header = next(csv.reader(f, delimiter="\t" if fmt == "tsv" else ",", quoting=quoting), [])
            split_column = resolve_auto([h.strip() for h in header])
        else:
            split_column = resolve_auto(_first_json_keys(p, fmt))
    if split_column is not None:
        columns.append((split_column, "split"))

    if fmt == "csv":
        rows = _read_delimited(p, ",", csv.QUOTE_MINIMAL, columns)
    elif fmt == "tsv":
        rows = _read_delimited(p, "\t", csv.QUOTE_NONE, columns)
    else:
        rows = _read_json_records(p, fmt, columns)

    texts: list[str] = []
    raw_labels: list = []
    splits: list[str] = []
    lines: list[int] = []
    for lineno, rec in rows:
        lines.append(lineno)
        text = rec[text_column]
        if text is None:
            raise ValueError(f"{p}:{lineno}: empty text in column {text_column!r}")
        texts.append(text if isinstance(text, str) else str(text))
        if label_column is not None:
            lab = rec[label_column]
            if lab is None or (isinstance(lab, str) and not lab.strip()):
                raise ValueError(f"{p}:{lineno}: empty label in column {label_column!r}")
            raw_labels.append(lab.strip() if isinstance(lab, str) else lab)
        if split_column is not None:
            splits.append(str(rec[split_column]).strip())

    labels: list[int] | None = None
    names: list[str] | None = None
    if label_column is not None:
        if label_names is not None:
            names = [str(n) for n in label_names]
            lookup = {n: i for i, n in enumerate(names)}
            labels = []
            for lab, ln in zip(raw_labels, lines):
                key = str(lab)
                if key not in lookup:
                    raise ValueError(f"{p}:{ln}: label {lab!r} is not one of label_names {names}")
                labels.append(lookup[key])
        else:
            as_int = [_as_int_label(v) for v in raw_labels]
            if all(v is not None for v in as_int):
                labels = as_int  # type: ignore[assignment]
            else:
                names = sorted({str(v) for v in raw_labels})
                lookup = {n: i for i, n in enumerate(names)}
                labels = [lookup[str(v)] for v in raw_labels]

    ds = TextDataset(
        texts=texts, labels=labels, splits=splits if split_column is not None else None, label_names=names,
        source=str(p), lines=lines,
    )
    if split is not None:
        ds = ds.filter(split)
    return ds


def _first_json_keys(path: Path, fmt: str) -> list[str]:
    with open(path, encoding="utf-8-sig") as f:
        if fmt == "json":
            text = f.read()
            if text.lstrip().startswith("["):
                data = json.loads(text)
                return list(data[0]) if data and isinstance(data[0], dict) else []
            lines = text.splitlines()
        else:
            lines = f
        for line in lines:
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    return []
                return list(obj) if isinstance(obj, dict) else []
    return []


def sst_min_length_filter(dataset: TextDataset, min_tokens: int = 6) -> TextDataset:
    """Keep the texts with at least ``min_tokens`` whitespace tokens (Jain & Wallace's SST filter).

    JW's ``Dataset(..., min_length=5)`` / ``filterbylength`` keeps sentences with more than 5 real tokens, i.e. at
    least 6 (on ``sst_dataset.csv``: 6,356 / 822 / 1,726 of 6,920 / 872 / 1,821 rows for train / dev / test).
    """
    keep = [i for i, t in enumerate(dataset.texts) if len(t.split()) >= min_tokens]
    return dataset.subset(keep)


def data_dir() -> Path | None:
    """The shared data folder: ``$ATTNFAITH_DATA`` if set, else ``../shared/data`` next to the repository.

    Returns None when the folder does not exist (tests and benchmarks then skip); a set but missing
    ``$ATTNFAITH_DATA`` also warns.
    """
    env = os.environ.get("ATTNFAITH_DATA")
    if env:
        p = Path(env).expanduser()
        if p.is_dir():
            return p.resolve()
        warnings.warn(f"ATTNFAITH_DATA={env!r} is not a directory; no data folder", stacklevel=2)
        return None
    repo = Path(__file__).resolve().parents[2]
    for cand in (repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if cand.is_dir():
            return cand.resolve()
    return None


# ---------------------------------------------------------------------------------------------------------------
# HuggingFace
# ---------------------------------------------------------------------------------------------------------------


def encode_for_hf(tokenizer, texts: str | Sequence[str], max_length: int = 128):
    """Tokenize for a HuggingFace model: padded to the longest text, truncated to ``max_length``, PyTorch tensors,
    with ``special_tokens_mask`` (1 on [CLS]/[SEP]/padding-like specials) so metrics can leave specials out."""
    if isinstance(texts, str):
        texts = [texts]
    return tokenizer(
        list(texts),
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
        return_special_tokens_mask=True,
    )
