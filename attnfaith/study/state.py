"""The state of a study run on disk: ``partial.jsonl`` (resume), its checksums, the fingerprints of a run, the
output folder's lock, and what ``results.json`` records about the model, the tokenizer, the data and the libraries.

* ``partial.jsonl``: a header line (format :data:`STATE_FORMAT`, the :func:`fingerprint`, the library versions),
  then one line per finished chunk; every line carries ``sha256`` (:func:`record_sha256`), checked by
  :func:`load_state`. A torn last line (a run killed while writing it) is not JSON and is ignored.
* ``--resume`` continues only a run with the same :func:`fingerprint`: configuration, data
  (:func:`data_fingerprint`), model class, size, labels and weights (:func:`weights_sha256`), tokenizer
  (:func:`tokenizer_sha256`).
* :func:`lock_out_dir`: one writer per output folder (an OS lock on ``DIR/.lock``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import IO, Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from attnfaith._text import VocabularyTokenizer
from attnfaith.attention.model_facts import model_dtype
from attnfaith.results import clean_json
from attnfaith.study.config import PipelineError, RunExistsError

__all__ = [
    "STATE_FILE", "RESULTS_FILE", "LOCK_FILE", "STATE_FORMAT", "RESULTS_FORMAT", "data_fingerprint", "versions",
    "weights_sha256", "tokenizer_sha256", "tokenizer_description", "model_description", "lock_out_dir",
    "record_sha256", "load_state", "fingerprint",
]

STATE_FILE = "partial.jsonl"
RESULTS_FILE = "results.json"
#: the lock file of an output folder (empty; held with an OS lock while a run writes the folder)
LOCK_FILE = ".lock"
#: format 2: every line carries ``sha256`` (:func:`record_sha256`); the fingerprint covers weights and tokenizer.
#: format 3: per-example seeds (:mod:`attnfaith.seeding`) instead of one seed per chunk: older chunks drew other
#: random numbers and are not resumed
STATE_FORMAT = "attnfaith.partial/3"
RESULTS_FORMAT = "attnfaith.results/1"


# -------------------------------------------------------------------------------------------------------------
# what identifies a run
# -------------------------------------------------------------------------------------------------------------


def data_fingerprint(texts: Sequence[str], labels: Sequence[int] | None, rationales=None,
                     example_ids: Sequence[int] | None = None) -> str:
    """First 16 hex digits of the SHA-256 of every text with its label, rationale and given example id, in
    order."""
    h = hashlib.sha256()
    for i, t in enumerate(texts):
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
        if labels is not None:
            h.update(str(labels[i]).encode())
        if rationales is not None:
            h.update(json.dumps(list(rationales[i])).encode())
        if example_ids is not None:
            h.update(b"\x02" + str(example_ids[i]).encode())
        h.update(b"\x01")
    return h.hexdigest()[:16]


def versions() -> dict[str, str]:
    """Versions of Python, attnfaith and the libraries the numbers depend on."""
    import numpy

    import attnfaith

    out = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "attnfaith": attnfaith.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }
    for name in ("transformers", "captum", "scipy", "tokenizers"):
        mod = sys.modules.get(name)
        if mod is None:
            try:
                mod = __import__(name)
            except Exception:  # pragma: no cover
                continue
        out[name] = getattr(mod, "__version__", "?")
    return out


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 (hex) of the model's ``state_dict()``, read from memory: for every entry in name order, the name,
    dtype, shape and the raw bytes of the tensor (copied to the CPU when elsewhere). Equal for equal weights whatever
    the model was loaded from; the model is not changed."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach()
        h.update(f"{name}\x00{str(t.dtype).replace('torch.', '')}\x00{tuple(t.shape)}\x00".encode())
        h.update(t.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _backend_definition(tokenizer: Any) -> Any:
    """A fast tokenizer's whole definition (normalizer, pre-tokenizer, model, post-processor, added tokens) as
    JSON data, without the truncation and padding state that encoding calls change; None for other tokenizers."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    to_str = getattr(backend, "to_str", None)
    if not callable(to_str):
        return None
    try:
        data = json.loads(to_str())
    except Exception:  # pragma: no cover - a backend that cannot be serialised
        return None
    for key in ("truncation", "padding"):
        data.pop(key, None)
    return data


def tokenizer_sha256(tokenizer: Any) -> str:
    """SHA-256 (hex) of what decides the token ids a tokenizer gives: its vocabulary (sorted ``get_vocab()`` items,
    or a :class:`VocabularyTokenizer`'s tokens and lower-casing), its special tokens with their ids, padding and
    truncation side, lower-casing, and a fast tokenizer's whole definition (normalizer, pre-tokenizer, model,
    post-processor), or, for a tokenizer without one, its class (whose code then decides). So the same fast
    tokenizer built in code or loaded from its files has the same hash."""
    parts: dict[str, Any] = {}
    if isinstance(tokenizer, VocabularyTokenizer):
        parts["tokens"] = list(tokenizer.vocab.itos)
        parts["lowercase"] = bool(tokenizer.vocab.lowercase)
    else:
        get_vocab = getattr(tokenizer, "get_vocab", None)
        parts["vocab"] = sorted(get_vocab().items()) if callable(get_vocab) else None
        specials = getattr(tokenizer, "special_tokens_map", None) or {}
        parts["special_tokens"] = {str(k): v if isinstance(v, (str, list)) else str(v) for k, v in specials.items()}
        parts["special_ids"] = sorted(int(i) for i in (getattr(tokenizer, "all_special_ids", None) or []))
        for attr in ("padding_side", "truncation_side", "do_lower_case"):
            parts[attr] = getattr(tokenizer, attr, None)
        parts["backend"] = _backend_definition(tokenizer)
        if parts["backend"] is None:
            parts["class"] = type(tokenizer).__name__
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenizer_description(tokenizer: Any) -> dict[str, Any]:
    """What ``results.json`` records about the tokenizer (class, source, size, :func:`tokenizer_sha256`)."""
    try:
        size = len(tokenizer)
    except TypeError:
        size = None
    return {
        "class": type(tokenizer).__name__,
        "name_or_path": str(getattr(tokenizer, "name_or_path", "") or "") or None,
        "size": size,
        "sha256": tokenizer_sha256(tokenizer),
    }


def model_description(model: nn.Module, source: str | None = None) -> dict[str, Any]:
    """What ``results.json`` records about the model (class, config, size, :func:`weights_sha256`, versions)."""
    config = getattr(model, "config", None)
    info: dict[str, Any] = {
        "source": source,
        "class": type(model).__name__,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "weights_sha256": weights_sha256(model),
        "dtype": None if model_dtype(model) is None else str(model_dtype(model)).replace("torch.", ""),
    }
    if config is not None:
        info.update({
            "model_type": getattr(config, "model_type", None),
            "name_or_path": getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None),
            "commit_hash": getattr(config, "_commit_hash", None),
            "transformers_version": getattr(config, "transformers_version", None),
            "num_labels": getattr(config, "num_labels", None),
            "id2label": {str(k): v for k, v in (getattr(config, "id2label", None) or {}).items()},
            "num_hidden_layers": getattr(config, "num_hidden_layers", None),
        })
    else:
        info["num_labels"] = getattr(model, "num_labels", None)
    return info


def num_labels_of(model: nn.Module) -> int | None:
    """The model's number of classes (``config.num_labels`` or ``model.num_labels``), None if it has none."""
    config = getattr(model, "config", None)
    n = getattr(config, "num_labels", None) if config is not None else getattr(model, "num_labels", None)
    return int(n) if isinstance(n, int) else None


def end_with_newline(path: Path) -> None:
    """Terminate a torn last line (a run killed while appending) so the next record starts on its own line."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")

    try:
        return bool(stream.isatty())
    except Exception:
        return False


# -------------------------------------------------------------------------------------------------------------
# output folder lock
# -------------------------------------------------------------------------------------------------------------

try:  # POSIX
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None
try:  # pragma: no cover - Windows
    import msvcrt as _msvcrt
except ImportError:
    _msvcrt = None


def _try_lock(f: IO[bytes]) -> bool:
    """Take an exclusive lock on the open file ``f`` without waiting: ``flock`` (POSIX) or ``msvcrt.locking`` of
    its first byte (Windows); False when another open file holds it. No lock (True) where neither exists. The lock
    goes when ``f`` is closed, also when the process dies."""
    try:
        if _fcntl is not None:
            _fcntl.flock(f.fileno(), _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        elif _msvcrt is not None:  # pragma: no cover
            f.seek(0)
            _msvcrt.locking(f.fileno(), _msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def lock_out_dir(out: Path) -> Iterator[Path]:
    """Hold an exclusive OS lock on ``out/.lock`` (created empty if needed, never removed) for the body.

    ``PipelineError`` if another process (or another open of the file in this one) holds it: one writer per output
    folder. The lock is released when the body ends, and by the operating system when the process ends or crashes.
    """
    path = out / LOCK_FILE
    f = open(path, "ab")
    try:
        if not _try_lock(f):
            raise PipelineError(f"{out} is in use by another attnfaith run (it holds {path}); wait for that run to "
                                "end or choose another --out")
        yield path
    finally:
        f.close()



# -------------------------------------------------------------------------------------------------------------
# state file
# -------------------------------------------------------------------------------------------------------------


def record_sha256(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a ``partial.jsonl`` record without its ``sha256`` field, as canonical JSON: keys sorted,
    no spaces, non-ASCII kept, UTF-8. Reading a line back with ``json.loads`` gives the same value (floats are
    written with ``repr``, which round-trips)."""
    body = {k: v for k, v in record.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def state_line(record: Mapping[str, Any]) -> str:
    """One line of ``partial.jsonl``: ``record`` (strict JSON) with its :func:`record_sha256`."""
    record = clean_json(record)
    return json.dumps({**record, "sha256": record_sha256(record)}, allow_nan=False) + "\n"


def load_state(out_dir: str | os.PathLike) -> tuple[dict | None, dict[int, dict]]:
    """``(header, {chunk index: chunk record})`` from ``DIR/partial.jsonl``.

    A line that is not JSON (a torn line: the run was killed while writing it) is ignored, so that chunk is
    recomputed. ``PipelineError``, naming the file and line, for a file of another format than
    :data:`STATE_FORMAT` and for a record whose ``sha256`` is missing or is not :func:`record_sha256` of its
    content (the line was changed after it was written).
    """
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        return None, {}
    header = None
    chunks: dict[int, dict] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # interrupted while writing this line: that chunk is recomputed
            if not isinstance(rec, dict) or rec.get("kind") not in ("header", "chunk"):
                continue
            if rec["kind"] == "header" and rec.get("format") != STATE_FORMAT:
                raise PipelineError(
                    f"{path} was written by another version of attnfaith (format {rec.get('format')!r}; this one "
                    f"reads {STATE_FORMAT!r}) and cannot be resumed; use --overwrite to start again, or a new --out"
                )
            if rec.get("sha256") != record_sha256(rec):
                what = "the header" if rec["kind"] == "header" else f"chunk {rec.get('index')}"
                raise PipelineError(
                    f"{path}:{lineno}: {what} does not match its checksum (the line was changed after it was "
                    "written); delete that line to recompute it, or use --overwrite to start again"
                )
            if rec["kind"] == "header":
                header = rec
            else:
                chunks[int(rec["index"])] = rec
    return header, chunks


def fingerprint(run: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a run that must match for ``--resume``: the configuration, the data (texts, labels and
    rationales: :func:`data_fingerprint`), the model (source, class, parameter count, labels, weights) and the
    tokenizer (:func:`tokenizer_sha256`). Library versions and the device are not part of it."""
    return {
        "config": run["config"],
        "data_fingerprint": run["data"]["fingerprint"],
        "n_examples": run["data"]["n_examples"],
        "model": {k: run["model"].get(k) for k in ("source", "class", "parameters", "num_labels", "weights_sha256")},
        "tokenizer": {"sha256": run["tokenizer"]["sha256"]},
    }


def differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted keys where the nested mappings ``a`` and ``b`` differ (``"config.seed"``...)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for k in sorted(set(a) | set(b)):
            out += differing_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]

# -------------------------------------------------------------------------------------------------------------
# the output folder
# -------------------------------------------------------------------------------------------------------------


def refuse_existing_run(out: Path, resume: bool, overwrite: bool) -> None:
    """``PipelineError`` when ``out`` is not a folder, or holds a run and neither ``resume`` nor ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise PipelineError(f"--out {out} exists and is not a folder")
    existing = [n for n in (STATE_FILE, RESULTS_FILE) if (out / n).exists()]
    if existing and not resume and not overwrite:
        raise RunExistsError(
            f"{out} already holds a run ({', '.join(existing)}); pass --resume to continue it or --overwrite to "
            "start again"
        )


def remove_earlier_run(out: Path) -> None:
    """Delete the files of an earlier run in ``out`` (``--overwrite``): results, report, state and figures."""
    for name in (STATE_FILE, RESULTS_FILE, "report.md"):
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    figs = out / "figures"
    if figs.is_dir():
        for p in figs.glob("*.png"):
            p.unlink()


def version_changes(before: Mapping[str, Any] | None, now: Mapping[str, Any]) -> list[str]:
    """``"name old → new"`` for every library version that differs (the platform string left out)."""
    before = before or {}
    return [f"{k} {before.get(k)} → {v}" for k, v in now.items() if k != "platform" and before.get(k) != v]


def check_resumed_chunks(path: Path, chunks: Mapping[int, dict], kept: Sequence[int], batch_size: int) -> None:
    """``PipelineError`` when a saved chunk does not hold the examples chunk ``c`` of this run holds
    (``kept[c * batch_size: (c + 1) * batch_size]``)."""
    for c, rec in sorted(chunks.items()):
        got = [e.get("index") for e in rec.get("examples", [])]
        if got != list(kept[c * batch_size: (c + 1) * batch_size]):
            raise PipelineError(f"{path}: chunk {c} holds the examples {got[:5]}{'...' if len(got) > 5 else ''}, "
                                "not the ones this run puts there; use --overwrite to start again")


def open_state(out: Path, run: Mapping[str, Any], resume: bool, notes: list[str]) -> dict[int, dict]:
    """The chunks already finished in ``out`` (``resume``: read back by :func:`load_state`, after checking the
    header's :func:`fingerprint` against ``run``'s; a note in ``notes`` when they were computed under other library
    versions), or none: then a new ``partial.jsonl`` with its header line. Ends a torn last line."""
    header, done_chunks = load_state(out) if resume else (None, {})
    if header is not None:
        mismatch = differing_keys(header.get("fingerprint"), fingerprint(run))
        if mismatch:
            raise PipelineError(
                f"--resume: the run in {out} was made with different settings ({', '.join(mismatch[:4])}"
                f"{'...' if len(mismatch) > 4 else ''}); use a new --out, or --overwrite to start again"
            )
        changed = version_changes(header.get("versions"), run["versions"])
        if changed and done_chunks:
            notes.append(f"resumed chunks were computed with other library versions ({', '.join(changed)})")
    else:
        done_chunks = {}
        with open(out / STATE_FILE, "w", encoding="utf-8") as f:
            f.write(state_line({"kind": "header", "format": STATE_FORMAT, "fingerprint": fingerprint(run),
                                "versions": run["versions"]}))
    end_with_newline(out / STATE_FILE)
    return done_chunks


def append_chunk(path: Path, record: Mapping[str, Any]) -> None:
    """Append a finished chunk's line (:func:`state_line`) to ``partial.jsonl``, flushed to disk."""
    line = state_line(record)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
