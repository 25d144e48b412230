"""The evaluation pipeline behind ``attnfaith evaluate`` and ``attnfaith demo``, as a library function.

:func:`run_evaluation` takes a model, its tokenizer and texts, runs the chosen attribution methods and evaluators on
chunks of examples, appends each finished chunk to ``DIR/partial.jsonl`` (so an interrupted run resumes without
recomputing finished chunks), then assembles ``DIR/results.json`` and, through :mod:`attnfaith.report` and
:mod:`attnfaith.plots`, ``DIR/report.md`` and ``DIR/figures/*.png``.

Methods (token attributions, one score per token; see ``docs/metrics.md``):

==========  ====================================================================================================
attention   :class:`attnfaith.AttentionAttribution` ``(model, layer)``: the layer's attention (mean over heads) of
            the query row the classifier reads ([CLS] / first real token; the last real token for decoder and
            encoder-decoder classifiers)
rollout     :class:`attnfaith.AttentionRollout` (Abnar & Zuidema 2020), same query row
gradient    :class:`attnfaith.attr.gradient.GradientImportance`: ``|∇ŷ·e|`` (Jain & Wallace's gradient measure)
ig          :class:`attnfaith.attr.ig.EmbeddingIntegratedGradients` (Captum ``LayerIntegratedGradients`` over the
            token embedding, pad-token baseline)
loo         :class:`attnfaith.attr.loo.LeaveOneOut`: TVD of the output when the token is deleted (Jain & Wallace)
random      seeded ``U[0, 1)`` scores: the first of the Serrano & Smith random orders that the erasure test uses
==========  ====================================================================================================

Evaluators:

* ``kendall``: :class:`attnfaith.KendallTau` of every method against the references ``loo`` and ``gradient`` (when
  they are among the methods); attention vs gradient / leave-one-out are Jain & Wallace's Table 2.
* ``permutation``: :class:`attnfaith.PermutationTVD` of the layer's attention (median ΔTVD over permutations).
* ``erasure``: :class:`attnfaith.ErasureFlip` for every method at ``level="token"``, ``erase="delete"`` (the
  tokens leave the input: every method on an equal footing), and at ``level="attention"`` (the method's ranking
  decides which attention weights of the layer are zeroed and renormalised: Serrano & Smith's setting). The random
  method uses Serrano & Smith's five seeded random orders.
* ``single``: :class:`attnfaith.SingleWeightErasure` (Serrano & Smith §4): top attention weight vs a random one.
* ``uniform``: :class:`attnfaith.UniformAttention` (Wiegreffe & Pinter's uniform-attention baseline, per example).
* ``adversarial``: :class:`attnfaith.AdversarialAttention` (Jain & Wallace §4.3): expensive, off by default.

Chunks: ``batch_size`` examples each, in order; chunk ``c`` uses the seed ``seed + c`` for every random choice, so a
run with one chunk reproduces direct calls of the evaluators with ``seed=seed``.

Before anything is written, the inputs are checked: ``max_length`` against the positions the model takes
(:func:`max_positions`), the tokenizer's size against the model's input embedding, the share of unknown
tokens in the first :data:`UNK_SAMPLE` texts (at most :data:`MAX_UNK_SHARE`), and the methods on the first example.
Then the output folder is locked (:func:`lock_out_dir`) for the rest of the run. ``--resume`` needs the same
:func:`resume fingerprint <_fingerprint>`: configuration, data, model class, size, labels and weights
(:func:`weights_sha256`), tokenizer (:func:`tokenizer_sha256`); every line of ``partial.jsonl`` carries the
``sha256`` of its own content (:func:`record_sha256`), checked when it is read back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from attnfaith import report as report_mod
from attnfaith._inputs import call_model, prepare_batch, probs_of
from attnfaith.attention.forward_args import max_positions
from attnfaith.attention.model_facts import input_embedding_module, model_device, model_dtype
from attnfaith._text import Encoded, VocabularyTokenizer, encode_texts
from attnfaith.results import atomic_write, clean_json, json_number, json_numbers

__all__ = [
    "METHODS",
    "EVALUATORS",
    "DEFAULT_METHODS",
    "DEFAULT_EVALUATORS",
    "ATTENTION_METHODS",
    "KENDALL_REFERENCES",
    "EvaluationConfig",
    "PipelineError",
    "RunExistsError",
    "run_evaluation",
    "load_state",
    "lock_out_dir",
    "parse_list",
    "weights_sha256",
    "tokenizer_sha256",
    "record_sha256",
]

METHODS = ("attention", "rollout", "gradient", "ig", "loo", "random")
EVALUATORS = ("kendall", "permutation", "erasure", "single", "uniform", "adversarial")
DEFAULT_METHODS = METHODS
DEFAULT_EVALUATORS = ("kendall", "permutation", "erasure", "single", "uniform")
#: methods read from the attention weights (compared against the references in Jain & Wallace's Table 2)
ATTENTION_METHODS = ("attention", "rollout")
#: Kendall τ references, in the order of the report's columns
KENDALL_REFERENCES = ("loo", "gradient")
#: evaluators that test the model's own attention (need a reachable attention layer)
ATTENTION_EVALUATORS = ("permutation", "single", "uniform", "adversarial")

STATE_FILE = "partial.jsonl"
RESULTS_FILE = "results.json"
#: the lock file of an output folder (empty; held with an OS lock while a run writes the folder)
LOCK_FILE = ".lock"
#: format 2: every line carries ``sha256`` (:func:`record_sha256`); the fingerprint covers weights and tokenizer
STATE_FORMAT = "attnfaith.partial/2"
RESULTS_FORMAT = "attnfaith.results/1"
#: seeds are integers in ``0 .. SEED_LIMIT - 1`` (NumPy's and most libraries' 32-bit seeds)
SEED_LIMIT = 2**32
#: the texts whose tokens are checked for the unknown token before a run
UNK_SAMPLE = 200
#: a tokenizer that maps more than this share of those tokens to its unknown token is refused
MAX_UNK_SHARE = 0.5


class PipelineError(ValueError):
    """A problem with the inputs of an evaluation run, reported to the user as one line."""


class RunExistsError(PipelineError):
    """The output folder already holds a run (and neither resume nor overwrite was asked for)."""


def parse_list(value: str | Sequence[str] | None, allowed: Sequence[str], what: str) -> list[str]:
    """A comma-separated list (or a sequence) of names from ``allowed``, in ``allowed``'s order, without duplicates.

    ``PipelineError`` naming the unknown entries.
    """
    if value is None:
        return []
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    items = [v for v in items if v]
    if not items:
        raise PipelineError(f"no {what} given; choose from {', '.join(allowed)}")
    unknown = [v for v in items if v not in allowed]
    if unknown:
        raise PipelineError(
            f"unknown {what} {', '.join(map(repr, unknown))}; choose from {', '.join(allowed)}"
        )
    return [a for a in allowed if a in items]


@dataclass
class EvaluationConfig:
    """Everything that determines the numbers of a run (stored in ``results.json``; ``--resume`` checks it).

    Attributes:
        methods, evaluators: names from :data:`METHODS` / :data:`EVALUATORS`.
        layer: the attention layer (call order; ``-1`` the last) read by ``attention`` and tested by the attention
            evaluators.
        batch_size: examples per chunk (one forward of the originals; the variants of a chunk run in forwards of
            ``variants_per_forward``).
        seed: base seed, an integer in ``0 .. 2**32 - 1`` (chunk ``c`` uses ``seed + c``).
        max_length: tokenizer truncation: at most the positions the model takes (:func:`max_positions`).
        permutations: permutations per example (Jain & Wallace: 100).
        ig_steps: integration steps of integrated gradients.
        n_random: random orders for the random erasure baseline (Serrano & Smith: 5).
        adversarial_steps: Adam steps of the adversarial search (Jain & Wallace: 500).
        variants_per_forward: variants per forward (Captum's ``max_examples_per_batch``); None: from memory.
        erasure_levels: ``("token", "attention")`` by default.
    """

    methods: tuple[str, ...] = DEFAULT_METHODS
    evaluators: tuple[str, ...] = DEFAULT_EVALUATORS
    layer: int = -1
    batch_size: int = 16
    seed: int = 0
    max_length: int = 128
    permutations: int = 100
    ig_steps: int = 50
    n_random: int = 5
    adversarial_steps: int = 500
    variants_per_forward: int | None = None
    erasure_levels: tuple[str, ...] = ("token", "attention")

    def __post_init__(self) -> None:
        self.methods = tuple(parse_list(list(self.methods), METHODS, "method"))
        self.evaluators = tuple(parse_list(list(self.evaluators), EVALUATORS, "evaluator"))
        self.erasure_levels = tuple(parse_list(list(self.erasure_levels), ("token", "attention"), "erasure level"))
        for name in ("batch_size", "max_length", "permutations", "ig_steps", "n_random"):
            _check_int(name, getattr(self, name), 1)
        _check_int("adversarial_steps", self.adversarial_steps, 0)
        if self.variants_per_forward is not None:
            _check_int("variants_per_forward", self.variants_per_forward, 1)
        _check_int("layer", self.layer, None)
        _check_int("seed", self.seed, 0, SEED_LIMIT)

    def to_dict(self) -> dict[str, Any]:
        return {
            "methods": list(self.methods),
            "evaluators": list(self.evaluators),
            "layer": self.layer,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "max_length": self.max_length,
            "permutations": self.permutations,
            "ig_steps": self.ig_steps,
            "n_random": self.n_random,
            "adversarial_steps": self.adversarial_steps,
            "variants_per_forward": self.variants_per_forward,
            "erasure_levels": list(self.erasure_levels),
        }


def _check_int(name: str, value: Any, low: int | None, high: int | None = None) -> None:
    """``PipelineError`` naming the option ``--name`` unless ``value`` is an ``int`` (not a bool) with
    ``low <= value < high`` (no bound where None)."""
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, int):
        raise PipelineError(f"{flag} must be an integer, got {value!r}")
    if (low is None or value >= low) and (high is None or value < high):
        return
    if high is not None:
        rule = f"an integer in {low}..{high - 1}"
    else:
        rule = "a positive integer" if low == 1 else f"an integer >= {low}"
    raise PipelineError(f"{flag} must be {rule}, got {value!r}")


# -------------------------------------------------------------------------------------------------------------
# small helpers
# -------------------------------------------------------------------------------------------------------------


def data_fingerprint(texts: Sequence[str], labels: Sequence[int] | None, rationales=None) -> str:
    h = hashlib.sha256()
    for i, t in enumerate(texts):
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
        if labels is not None:
            h.update(str(labels[i]).encode())
        if rationales is not None:
            h.update(json.dumps(list(rationales[i])).encode())
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
    config = getattr(model, "config", None)
    n = getattr(config, "num_labels", None) if config is not None else getattr(model, "num_labels", None)
    return int(n) if isinstance(n, int) else None


def _end_with_newline(path: Path) -> None:
    """Terminate a torn last line (a run killed while appending) so the next record starts on its own line."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")


def _isatty(stream: Any) -> bool:
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
# checks of the inputs (before anything is written)
# -------------------------------------------------------------------------------------------------------------


def _special_tokens_added(tokenizer: Any) -> int:
    """How many special tokens the tokenizer adds to one text ([CLS] and [SEP]: 2)."""
    if isinstance(tokenizer, VocabularyTokenizer):
        return 2
    count = getattr(tokenizer, "num_special_tokens_to_add", None)
    try:
        return int(count(pair=False)) if callable(count) else 0
    except Exception:  # pragma: no cover - a tokenizer that cannot tell
        return 0


def _check_max_length(model: nn.Module, tokenizer: Any, max_length: int) -> None:
    """``PipelineError`` naming ``--max-length`` when it exceeds :func:`max_positions` or leaves no room
    for a token after the tokenizer's special tokens."""
    limit = max_positions(model)
    if limit is not None and max_length > limit[0]:
        raise PipelineError(f"--max-length {max_length} is more than the model takes: at most {limit[0]} tokens "
                            f"({limit[1]}); use --max-length {limit[0]} or less")
    specials = _special_tokens_added(tokenizer)
    if max_length <= specials:
        raise PipelineError(f"--max-length {max_length} leaves no room for a word: the tokenizer adds {specials} "
                            "special tokens to every text")


def _check_vocabulary_size(model: nn.Module, tokenizer: Any) -> None:
    """``PipelineError`` naming ``--tokenizer`` when the tokenizer has more ids than the model's input embedding
    has rows (an id past the last row fails inside the model)."""
    try:
        rows = getattr(input_embedding_module(model), "num_embeddings", None)
        size = len(tokenizer)
    except TypeError:
        return
    if isinstance(rows, int) and size > rows:
        raise PipelineError(f"--tokenizer: the tokenizer has {size} tokens but the model's input embedding has "
                            f"{rows} rows: it is not the model's tokenizer (pass the one it was trained with)")


@dataclass
class _TextScan:
    """What tokenizing every text says before the run.

    Attributes:
        kept, dropped: indices of the texts with at least one real (non-special, non-padding) token, and of the
            others (left out).
        truncated: indices of the texts longer than ``max_length`` tokens (special tokens included), cut to it.
        unknown_share: share of the real tokens of the first :data:`UNK_SAMPLE` texts that are the tokenizer's
            unknown token (None when it has none or there are no real tokens).
    """

    kept: list[int]
    dropped: list[int]
    truncated: list[int]
    unknown_share: float | None


def _scan_texts(tokenizer: Any, texts: Sequence[str], max_length: int, batch: int = 256) -> _TextScan:
    """Tokenize ``texts`` at ``max_length`` (and at ``max_length + 1`` to see which were cut): :class:`_TextScan`."""
    kept, dropped, truncated = [], [], []
    unk_id = getattr(tokenizer, "unk_token_id", None)
    n_unknown = n_real = 0
    for a in range(0, len(texts), batch):
        part = texts[a: a + batch]
        enc = encode_texts(tokenizer, part, max_length).inputs
        real = enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()
        for i, n in enumerate(real.sum(-1).tolist()):
            (kept if n > 0 else dropped).append(a + i)
        longer = encode_texts(tokenizer, part, max_length + 1).inputs["attention_mask"].sum(-1)
        truncated += [a + i for i, n in enumerate(longer.tolist()) if n > max_length]
        if a < UNK_SAMPLE and unk_id is not None:
            sample = real[: UNK_SAMPLE - a]
            n_real += int(sample.sum())
            n_unknown += int((sample & (enc["input_ids"][: UNK_SAMPLE - a] == int(unk_id))).sum())
    return _TextScan(kept, dropped, truncated, n_unknown / n_real if n_real else None)


def _check_unknown_share(tokenizer: Any, scan: _TextScan, n_texts: int) -> None:
    """``PipelineError`` naming ``--tokenizer`` when more than :data:`MAX_UNK_SHARE` of the sampled tokens are
    the unknown token: the tokenizer does not know the data's words (or is empty: a model folder without
    tokenizer files)."""
    share = scan.unknown_share
    if share is not None and share > MAX_UNK_SHARE:
        unk = getattr(tokenizer, "unk_token", None)
        raise PipelineError(
            f"--tokenizer: the tokenizer maps {share:.0%} of the tokens of the first {min(n_texts, UNK_SAMPLE)} "
            f"texts to its unknown token{f' {unk}' if unk else ''}: it does not know the data's words; pass "
            "--tokenizer with the tokenizer the model was trained with"
        )


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


def _state_line(record: Mapping[str, Any]) -> str:
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


def _fingerprint(run: Mapping[str, Any]) -> dict[str, Any]:
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


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


# -------------------------------------------------------------------------------------------------------------
# methods
# -------------------------------------------------------------------------------------------------------------


class _Methods:
    """Builds and runs the attribution methods on one chunk."""

    def __init__(self, model: nn.Module, config: EvaluationConfig, query: str, skip: Mapping[str, str]) -> None:
        from attnfaith.attr import AttentionAttribution, AttentionRollout
        from attnfaith.attr.gradient import GradientImportance
        from attnfaith.attr.ig import EmbeddingIntegratedGradients
        from attnfaith.attr.loo import LeaveOneOut

        self.config = config
        self.objects: dict[str, Any] = {}
        vpf = config.variants_per_forward
        for m in config.methods:
            if m in skip:
                continue
            if m == "attention":
                self.objects[m] = AttentionAttribution(model, layer=config.layer, query=query)
            elif m == "rollout":
                self.objects[m] = AttentionRollout(model, query=query)
            elif m == "gradient":
                self.objects[m] = GradientImportance(model)
            elif m == "ig":
                self.objects[m] = EmbeddingIntegratedGradients(model, n_steps=config.ig_steps,
                                                               internal_batch_size=vpf)
            elif m == "loo":
                self.objects[m] = LeaveOneOut(model, "delete", max_examples_per_batch=vpf)
            elif m == "random":
                self.objects[m] = None

    def scores(self, name: str, batch, seed: int) -> torch.Tensor:
        if name == "random":
            from attnfaith.metrics import random_scores

            # the first of the random orders ErasureFlip draws with this seed (rankings.resolve_ranking)
            g = torch.Generator().manual_seed(int(seed))
            return random_scores(batch.items.detach().to("cpu"), generator=g).to(batch.device)
        return self.objects[name].attribute_batch(batch, None).detach().float()


def _probe(model: nn.Module, enc: Encoded, config: EvaluationConfig) -> tuple[str, dict[str, str], list[str]]:
    """Check, on the first example, which methods and evaluators apply to the model.

    Returns ``(query, skipped, notes)``: the query row for the attention methods, ``{name: reason}`` of what cannot
    run, and notes for the report.
    """
    from attnfaith.attention import AttentionTap, AttentionUnreachableError
    from attnfaith.evaluators.rankings import auto_query

    one = {k: v[:1] for k, v in enc.inputs.items()}
    batch = prepare_batch(model, one, device=model_device(model))
    skipped: dict[str, str] = {}
    notes: list[str] = []
    query = "cls"
    try:
        with torch.no_grad(), AttentionTap(model, capture=None) as tap:
            call_model(model, batch)
        layers = tap.layers
        if not layers:
            raise AttentionUnreachableError("the tap found no attention layer")
        n = len(layers)
        if not -n <= config.layer < n:
            raise PipelineError(f"--layer {config.layer} is out of range: the model has {n} attention layers "
                                f"(use 0..{n - 1} or -1..-{n})")
        query = auto_query(layers, [config.layer % n])
    except AttentionUnreachableError as exc:
        reason = f"no attention layer reachable ({exc})"
        for name in ATTENTION_METHODS:
            skipped[name] = reason
        for name in ATTENTION_EVALUATORS:
            skipped[name] = reason
        skipped["erasure:attention"] = reason
        layers = ()
    if "rollout" in config.methods and "rollout" not in skipped:
        T = batch.length
        if not any(l.kind == "self" for l in layers):
            skipped["rollout"] = "the model has no self-attention layer over the input tokens to roll out"
        else:
            from attnfaith.attr import AttentionRollout

            try:
                AttentionRollout(model, query=query).attribute_batch(batch)
            except ValueError as exc:
                skipped["rollout"] = str(exc).replace("model: ", "")
    for name in ("gradient", "ig"):
        if name in config.methods:
            try:
                input_embedding_module(model)
            except TypeError as exc:
                skipped[name] = str(exc)
    return query, skipped, notes


# -------------------------------------------------------------------------------------------------------------
# per-chunk evaluation
# -------------------------------------------------------------------------------------------------------------


def _items_list(mask_row: torch.Tensor) -> list[int]:
    return mask_row.nonzero().flatten().tolist()


def _precision_at_k(scores: torch.Tensor, items: torch.Tensor, gold: torch.Tensor) -> float | None:
    """Share of the ``k = |gold|`` top-scored items (ties: lower position) that are gold; None without gold."""
    from attnfaith.metrics import topk_mask

    k = int((gold & items).sum())
    if k == 0:
        return None
    top = topk_mask(scores[None].float(), k, items[None])[0]
    return float((top & gold).sum()) / k


def _erasure_record(res, b: int) -> dict[str, Any]:
    n = int(res.n_items[b])
    curve = json_numbers(res.curve[b, : n + 1])
    return {
        "fraction_removed": json_number(res.fraction_removed[b]),
        "n_removed": json_number(res.n_removed[b]),
        "flipped": bool(res.flipped[b]),
        "aopc": json_number(res.aopc[b]),
        "curve": curve,
    }


class _ChunkRunner:
    def __init__(self, model: nn.Module, tokenizer: Any, config: EvaluationConfig, query: str,
                 skipped: Mapping[str, str], progress: bool, n_total: int, done: int) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.query = query
        self.skipped = dict(skipped)
        self.methods = [m for m in config.methods if m not in skipped]
        self.evaluators = [e for e in config.evaluators if e not in skipped]
        self.method_objects = _Methods(model, config, query, skipped)
        self.bars: dict[str, Any] = {}
        self.lines = progress and not _isatty(sys.stderr)
        self.n_total = n_total
        self.n_done = done
        if progress and not self.lines:
            from tqdm.auto import tqdm

            stages = [f"method {m}" for m in self.methods] + [f"evaluator {e}" for e in self.evaluators]
            width = max(len(s) for s in stages) if stages else 10
            for pos, stage in enumerate(stages):
                self.bars[stage] = tqdm(total=n_total, initial=done, desc=stage.ljust(width), position=pos,
                                        leave=True, unit="ex", dynamic_ncols=True, file=sys.stderr)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()

    def chunk_done(self, index: int, n_chunks: int, n: int, seconds: float) -> None:
        """One line per finished chunk when stderr is not a terminal (logs), instead of the bars."""
        self.n_done += n
        if self.lines:
            print(f"attnfaith: chunk {index + 1}/{n_chunks} done: {self.n_done}/{self.n_total} examples "
                  f"({seconds:.1f} s)", file=sys.stderr, flush=True)

    def _tick(self, stage: str, n: int) -> None:
        bar = self.bars.get(stage)
        if bar is not None:
            bar.update(n)

    def run(self, index: int, indices: Sequence[int], texts: Sequence[str], labels: Sequence[int] | None,
            rationales: Sequence[Sequence[int]] | None) -> dict[str, Any]:
        from attnfaith._state import model_guard

        config = self.config
        model = self.model
        seed = config.seed + index
        vpf = config.variants_per_forward
        timings: dict[str, float] = {}
        enc = encode_texts(self.tokenizer, texts, config.max_length)
        inputs = enc.inputs
        device = model_device(model)
        batch = prepare_batch(model, inputs, device=device)
        B = batch.size
        items = batch.items.cpu()

        with model_guard(model), torch.no_grad():
            t0 = time.perf_counter()
            probs = probs_of(call_model(model, batch)).float().cpu()
            timings["forward"] = time.perf_counter() - t0
        pred = probs.argmax(-1)

        examples: list[dict[str, Any]] = []
        for b in range(B):
            pos = _items_list(items[b])
            rec: dict[str, Any] = {
                "index": int(indices[b]),
                "text": texts[b],
                "label": None if labels is None else int(labels[b]),
                "prediction": int(pred[b]),
                "probability": json_number(probs[b, pred[b]]),
                "probs": json_numbers(probs[b]),
                "n_tokens": len(pos),
                "tokens": [enc.tokens[b][p] for p in pos],
            }
            if labels is not None:
                rec["correct"] = bool(int(labels[b]) == int(pred[b]))
            examples.append(rec)

        # gold rationale (token level, over the items)
        gold = None
        if rationales is not None and enc.word_ids is not None:
            gold = torch.zeros_like(items)
            for b in range(B):
                words = set(int(w) for w in rationales[b])
                for p in range(items.shape[1]):
                    w = enc.word_ids[b][p] if p < len(enc.word_ids[b]) else None
                    if w is not None and w in words and bool(items[b, p]):
                        gold[b, p] = True
                examples[b]["rationale"] = [i for i, p in enumerate(_items_list(items[b])) if bool(gold[b, p])]

        # ---- attribution methods
        scores: dict[str, torch.Tensor] = {}
        for m in self.methods:
            t0 = time.perf_counter()
            scores[m] = self.method_objects.scores(m, batch, seed)
            timings[f"method:{m}"] = time.perf_counter() - t0
            s_cpu = scores[m].cpu()
            for b in range(B):
                pos = _items_list(items[b])
                examples[b].setdefault("scores", {})[m] = json_numbers(s_cpu[b, pos])
                if gold is not None:
                    examples[b].setdefault("rationale_precision", {})[m] = _precision_at_k(s_cpu[b], items[b], gold[b])
            self._tick(f"method {m}", B)

        # ---- evaluators
        from attnfaith.evaluators import (
            AdversarialAttention, ErasureFlip, KendallTau, PermutationTVD, SingleWeightErasure,
        )

        has_items = bool((items.sum(-1) > 0).all())
        for e in self.evaluators:
            t0 = time.perf_counter()
            if e == "kendall":
                for ref in KENDALL_REFERENCES:
                    if ref not in scores:
                        continue
                    kt = KendallTau(model, reference=scores[ref], max_examples_per_batch=vpf)
                    for m in self.methods:
                        if m == ref:
                            continue
                        res = kt.evaluate(inputs, attributions=scores[m])
                        for b in range(B):
                            examples[b].setdefault("kendall", {}).setdefault(ref, {})[m] = {
                                "tau": json_number(res.tau[b]), "p": json_number(res.pvalue[b]),
                            }
            elif e == "permutation":
                res = PermutationTVD(model, layer=config.layer, n_permutations=config.permutations, seed=seed,
                                     max_examples_per_batch=vpf).evaluate(inputs)
                for b in range(B):
                    examples[b]["permutation"] = {
                        "median_tvd": json_number(res.median[b]), "max_tvd": json_number(res.max[b]),
                        "mean_tvd": json_number(res.tvd[b].double().mean()),
                        "max_attention": json_number(res.max_attention[b]),
                    }
            elif e == "erasure" and has_items:
                for level in config.erasure_levels:
                    if level == "attention" and "erasure:attention" in self.skipped:
                        continue
                    ef = ErasureFlip(model, level=level, layer=config.layer, erase="delete", n_random=config.n_random,
                                     seed=seed, max_examples_per_batch=vpf)
                    for m in self.methods:
                        attr = "random" if m == "random" else scores[m]
                        res = ef.evaluate(inputs, attributions=attr, name=m)
                        for b in range(B):
                            examples[b].setdefault(f"erasure_{level}", {})[m] = _erasure_record(res, b)
            elif e == "single" and has_items:
                res = SingleWeightErasure(model, layer=config.layer, seed=seed,
                                          max_examples_per_batch=vpf).evaluate(inputs, "attention")
                for b in range(B):
                    examples[b]["single"] = {
                        "js_top": json_number(res.js_top[b]), "js_random": json_number(res.js_random[b]),
                        "delta_js": json_number(res.delta_js[b]), "flip_top": bool(res.flip_top[b]),
                        "flip_random": bool(res.flip_random[b]), "has_random": bool(res.has_random[b]),
                        "top_item": _item_rank(items[b], int(res.top_index[b])),
                        "random_item": _item_rank(items[b], int(res.random_index[b])),
                    }
            elif e == "uniform":
                _run_uniform(model, inputs, None if labels is None else list(labels), vpf, examples)
            elif e == "adversarial":
                res = AdversarialAttention(model, layer=config.layer, steps=config.adversarial_steps, seed=seed,
                                           max_examples_per_batch=vpf).evaluate(inputs)
                for b in range(B):
                    examples[b]["adversarial"] = {
                        "jsd": json_number(res.jsd[b]),
                        "tvd": json_number(res.tvd[b]), "max_attention": json_number(res.max_attention[b]),
                    }
            timings[f"evaluator:{e}"] = time.perf_counter() - t0
            self._tick(f"evaluator {e}", B)
        return {"kind": "chunk", "index": index, "seed": seed, "examples": examples, "timings": timings}


def _item_rank(items_row: torch.Tensor, position: int) -> int | None:
    """Index among the items of the token at ``position`` (None for −1)."""
    if position < 0:
        return None
    return int(items_row[:position].sum())


def _run_uniform(model, inputs, labels, vpf, examples: list[dict]) -> None:
    from attnfaith.evaluators import UniformAttention

    # Wiegreffe & Pinter's baseline: every attention layer uniform (the evaluator's default, layers="all")
    res = UniformAttention(model, max_examples_per_batch=vpf).evaluate(inputs, labels=labels)
    for b in range(len(examples)):
        examples[b]["uniform"] = {
            "tvd": json_number(res.tvd[b]),
            "jsd": json_number(res.jsd[b]),
            "flipped": bool(res.flipped[b]),
            "prediction_uniform": int(res.prediction_uniform[b]),
        }


# -------------------------------------------------------------------------------------------------------------
# the run
# -------------------------------------------------------------------------------------------------------------


def _refuse_existing_run(out: Path, resume: bool, overwrite: bool) -> None:
    """``PipelineError`` when ``out`` is not a folder, or holds a run and neither ``resume`` nor ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise PipelineError(f"--out {out} exists and is not a folder")
    existing = [n for n in (STATE_FILE, RESULTS_FILE) if (out / n).exists()]
    if existing and not resume and not overwrite:
        raise RunExistsError(
            f"{out} already holds a run ({', '.join(existing)}); pass --resume to continue it or --overwrite to "
            "start again"
        )


def _remove_earlier_run(out: Path) -> None:
    """Delete the files of an earlier run in ``out`` (``--overwrite``): results, report, state and figures."""
    for name in (STATE_FILE, RESULTS_FILE, "report.md"):
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    figs = out / "figures"
    if figs.is_dir():
        for p in figs.glob("*.png"):
            p.unlink()


def _version_changes(before: Mapping[str, Any] | None, now: Mapping[str, Any]) -> list[str]:
    """``"name old → new"`` for every library version that differs (the platform string left out)."""
    before = before or {}
    return [f"{k} {before.get(k)} → {v}" for k, v in now.items() if k != "platform" and before.get(k) != v]


def _check_resumed_chunks(path: Path, chunks: Mapping[int, dict], kept: Sequence[int], batch_size: int) -> None:
    """``PipelineError`` when a saved chunk does not hold the examples chunk ``c`` of this run holds
    (``kept[c * batch_size: (c + 1) * batch_size]``)."""
    for c, rec in sorted(chunks.items()):
        got = [e.get("index") for e in rec.get("examples", [])]
        if got != list(kept[c * batch_size: (c + 1) * batch_size]):
            raise PipelineError(f"{path}: chunk {c} holds the examples {got[:5]}{'...' if len(got) > 5 else ''}, "
                                "not the ones this run puts there; use --overwrite to start again")


def run_evaluation(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int] | None = None,
    methods: Sequence[str] | str = DEFAULT_METHODS,
    evaluators: Sequence[str] | str = DEFAULT_EVALUATORS,
    out_dir: str | os.PathLike = "attnfaith-out",
    *,
    config: EvaluationConfig | None = None,
    rationales: Sequence[Sequence[int]] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    model_source: str | None = None,
    data_info: Mapping[str, Any] | None = None,
    title: str | None = None,
    report: bool = True,
    figures: bool = True,
    strict_methods: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    extra_timings: Mapping[str, float] | None = None,
    **config_kwargs: Any,
) -> dict[str, Any]:
    """Evaluate every chosen attribution method with every chosen evaluator on ``texts``; write the results.

    Args:
        model: a sequence classifier: a HuggingFace ``*ForSequenceClassification`` or a reference model
            (:mod:`attnfaith.models`), on the device it should run on. It is left exactly as found.
        tokenizer: its HuggingFace tokenizer, or a :class:`attnfaith._text.VocabularyTokenizer` (or a
            :class:`attnfaith.data.Vocabulary`, wrapped automatically) for a reference model.
        texts: the texts; ``labels``: optional gold labels (class indices of the model).
        methods, evaluators: names (or comma-separated strings) from :data:`METHODS` / :data:`EVALUATORS`.
        out_dir: the output folder (``results.json``, ``report.md``, ``figures/``, ``partial.jsonl``, and the
            lock file ``.lock``), locked by :func:`lock_out_dir` while the run writes it.
        config: an :class:`EvaluationConfig`; or pass its fields as keyword arguments (``layer=-1``,
            ``batch_size=16``, ``seed=0``...).
        rationales: optional per-text lists of whitespace-word indices that make up the known rationale: the
            report then adds the rationale recovery of each method (precision@k of its top-k tokens, k = number
            of rationale tokens).
        resume: continue the run in ``out_dir`` (finished chunks are read back, not recomputed); the
            :func:`fingerprint <_fingerprint>` (configuration, data, model weights, tokenizer) must match and every
            line's checksum must hold.
        overwrite: start again in an ``out_dir`` that holds a run (its results files are replaced).
        progress: tqdm bars per stage (on stderr).
        model_source, data_info, title: recorded in ``results.json`` and shown in the report.
        report, figures: write ``report.md`` / ``figures/*.png`` (figures need matplotlib).
        strict_methods: a method or evaluator that does not apply to the model raises instead of being skipped
            (with a note in the report).
        on_chunk: called as ``on_chunk(done_chunks, total_chunks)`` after each chunk is saved.
        on_warning: called with a one-line warning before the work starts (texts truncated to ``max_length``);
            default :func:`warnings.warn`.
        extra_timings: further ``{name: seconds}`` recorded in ``results.json``'s ``timings`` (the CLI's data and
            model loading).

    Returns:
        The ``results.json`` content as a dict; ``data.n_truncated`` / ``data.truncated``: the texts cut to
        ``max_length`` tokens, ``data.dropped_empty``: the texts left out for want of a real token.

    Raises:
        PipelineError: bad names or options, a ``max_length`` the model cannot take, a tokenizer larger than the
            model's embedding or that maps most tokens to its unknown token, a run already in ``out_dir``, another
            run writing ``out_dir``, a resume that does not match. Every check on the inputs comes before
            anything is written to ``out_dir``.
    """
    if isinstance(methods, str):
        methods = parse_list(methods, METHODS, "method")
    if isinstance(evaluators, str):
        evaluators = parse_list(evaluators, EVALUATORS, "evaluator")
    if config is None:
        config = EvaluationConfig(methods=tuple(methods), evaluators=tuple(evaluators), **config_kwargs)
    elif config_kwargs:
        raise TypeError("pass either config= or its fields as keyword arguments, not both")
    if not isinstance(model, nn.Module):
        raise PipelineError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    from attnfaith.data import Vocabulary

    if isinstance(tokenizer, Vocabulary):
        tokenizer = VocabularyTokenizer(tokenizer)
    texts = [str(t) for t in texts]
    if not texts:
        raise PipelineError("no texts to evaluate")
    if labels is not None:
        labels = [int(y) for y in labels]
        if len(labels) != len(texts):
            raise PipelineError(f"{len(labels)} labels for {len(texts)} texts")
        n_classes = num_labels_of(model)
        if n_classes is not None:
            bad = [(i, y) for i, y in enumerate(labels) if not 0 <= y < max(n_classes, 2)]
            if bad:
                i, y = bad[0]
                raise PipelineError(f"label {y} (example {i}) is outside the model's classes 0..{max(n_classes, 2) - 1}")
    if rationales is not None:
        rationales = [list(map(int, r)) for r in rationales]
        if len(rationales) != len(texts):
            raise PipelineError(f"{len(rationales)} rationales for {len(texts)} texts")

    out = Path(out_dir)
    _refuse_existing_run(out, resume, overwrite)
    t_start = time.perf_counter()

    # checks that need the model and the tokenizer: all before anything is written
    _check_max_length(model, tokenizer, config.max_length)
    _check_vocabulary_size(model, tokenizer)
    scan = _scan_texts(tokenizer, texts, config.max_length)
    _check_unknown_share(tokenizer, scan, len(texts))
    if not scan.kept:
        raise PipelineError("no text has a real (non-special) token to explain")
    # which methods / evaluators apply (checked on the first example that has a token)
    enc0 = encode_texts(tokenizer, [texts[scan.kept[0]]], config.max_length)
    from attnfaith._state import model_guard

    with model_guard(model):
        query, skipped, notes = _probe(model, enc0, config)
    skipped = {k: v for k, v in skipped.items()
               if k in config.methods or k in config.evaluators or k == "erasure:attention"}
    if strict_methods:
        bad = {k: v for k, v in skipped.items() if k in config.methods or k in config.evaluators}
        if bad:
            k, v = next(iter(bad.items()))
            raise PipelineError(f"{k} does not apply to this model: {v}")

    run: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "title": title,
        "config": config.to_dict(),
        "seed": config.seed,
        "model": model_description(model, model_source),
        "tokenizer": tokenizer_description(tokenizer),
        "data": {
            **dict(data_info or {}),
            "n_examples": len(texts),
            "has_labels": labels is not None,
            "has_rationales": rationales is not None,
            "fingerprint": data_fingerprint(texts, labels, rationales),
            # examples with no real token (empty texts) cannot be explained: they are left out, and listed
            "dropped_empty": scan.dropped,
            "n_truncated": len(scan.truncated),
            "truncated": scan.truncated,
        },
        "versions": versions(),
        "device": str(model_device(model)),
        "skipped": skipped,
        "query": query,
    }
    if scan.dropped:
        notes.append(f"{len(scan.dropped)} example(s) without any real token left out: {scan.dropped[:10]}"
                     f"{'...' if len(scan.dropped) > 10 else ''}")
    truncation = (report_mod.truncation_sentence(len(scan.truncated), len(texts), config.max_length)
                  if scan.truncated else None)
    if truncation:
        notes.append(truncation)
        (on_warning or (lambda m: warnings.warn(m, stacklevel=3)))(truncation)

    out.mkdir(parents=True, exist_ok=True)
    with lock_out_dir(out):
        _refuse_existing_run(out, resume, overwrite)  # again, now that no other run can write the folder
        if overwrite and not resume:
            _remove_earlier_run(out)
        header, done_chunks = load_state(out) if resume else (None, {})
        if header is not None:
            mismatch = _diff(header.get("fingerprint"), _fingerprint(run))
            if mismatch:
                raise PipelineError(
                    f"--resume: the run in {out} was made with different settings ({', '.join(mismatch[:4])}"
                    f"{'...' if len(mismatch) > 4 else ''}); use a new --out, or --overwrite to start again"
                )
            changed = _version_changes(header.get("versions"), run["versions"])
            if changed and done_chunks:
                notes.append(f"resumed chunks were computed with other library versions ({', '.join(changed)})")
        else:
            done_chunks = {}
            with open(out / STATE_FILE, "w", encoding="utf-8") as f:
                f.write(_state_line({"kind": "header", "format": STATE_FORMAT, "fingerprint": _fingerprint(run),
                                     "versions": run["versions"]}))

        kept = scan.kept
        n = len(kept)
        bs = config.batch_size
        n_chunks = math.ceil(n / bs)
        _check_resumed_chunks(out / STATE_FILE, {c: r for c, r in done_chunks.items() if c < n_chunks}, kept, bs)
        todo = [c for c in range(n_chunks) if c not in done_chunks]
        n_done_examples = sum(len(done_chunks[c]["examples"]) for c in done_chunks if c < n_chunks)
        runner = _ChunkRunner(model, tokenizer, config, query, skipped, progress, n, n_done_examples) if todo else None
        resumed = len(done_chunks)
        _end_with_newline(out / STATE_FILE)
        try:
            for c in todo:
                idx = kept[c * bs: (c + 1) * bs]
                rec = runner.run(c, idx, [texts[i] for i in idx], None if labels is None else [labels[i] for i in idx],
                                 None if rationales is None else [rationales[i] for i in idx])
                line = _state_line(rec)
                with open(out / STATE_FILE, "a", encoding="utf-8") as f:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
                done_chunks[c] = rec
                runner.chunk_done(c, n_chunks, len(idx), sum(rec["timings"].values()))
                if on_chunk is not None:
                    on_chunk(len(done_chunks), n_chunks)
        finally:
            if runner is not None:
                runner.close()

        examples: list[dict] = []
        stage_times: dict[str, float] = {}
        for c in range(n_chunks):
            examples.extend(done_chunks[c]["examples"])
            for k, v in done_chunks[c]["timings"].items():
                stage_times[k] = stage_times.get(k, 0.0) + float(v)
        run["examples"] = examples
        run["timings"] = {
            "stages": {k: round(v, 4) for k, v in stage_times.items()},
            "evaluation_seconds": round(sum(stage_times.values()), 3),
            "this_session_seconds": round(time.perf_counter() - t_start, 3),
            "chunks": n_chunks,
            "chunks_resumed": min(resumed, n_chunks),
            **{k: round(float(v), 3) for k, v in (extra_timings or {}).items()},
        }

        run["summary"] = report_mod.summarise(run)
        run["notes"] = notes
        if figures:
            t0 = time.perf_counter()
            try:
                from attnfaith import plots

                run["figures"] = plots.make_figures(run, out / "figures")
            except ImportError as exc:
                run["figures"] = {}
                run["notes"].append(f"figures skipped: {exc} (pip install 'attnfaith[plot]')")
            run["timings"]["figures_seconds"] = round(time.perf_counter() - t0, 3)
        run = clean_json(run)
        atomic_write(out / RESULTS_FILE, json.dumps(run, indent=1, allow_nan=False))
        if report:
            atomic_write(out / "report.md", report_mod.render_markdown(run))
    return run
