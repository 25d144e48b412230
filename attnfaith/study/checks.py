"""Checks of a study's inputs, all before anything is written, and which methods and evaluators apply.

* :func:`check_max_length`: ``max_length`` against the positions the model takes
  (:func:`attnfaith.attention.forward_args.max_positions`) and the tokenizer's special tokens;
* :func:`check_vocabulary_size`: the tokenizer's size against the rows of the model's input embedding;
* :func:`scan_texts` / :func:`check_unknown_share`: texts without a real token, texts cut to ``max_length``, and the
  share of unknown tokens in the first :data:`UNK_SAMPLE` texts (at most :data:`MAX_UNK_SHARE`);
* :func:`probe`: on the first example, the attention layers the tap reaches, the query row, and the methods and
  evaluators that do not apply (their registrations' ``reads_attention`` / ``needs_attention`` /
  ``attention_parts`` / ``check``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from attnfaith._inputs import call_model, prepare_batch
from attnfaith._text import Encoded, VocabularyTokenizer, encode_texts, token_counts
from attnfaith.attention.forward_args import max_positions
from attnfaith.attention.model_facts import input_embedding_module, model_device
from attnfaith.study import registry
from attnfaith.study.config import EvaluationConfig, PipelineError

__all__ = ["UNK_SAMPLE", "MAX_UNK_SHARE", "check_max_length", "check_vocabulary_size", "TextScan", "scan_texts",
           "check_unknown_share", "probe"]

#: the texts whose tokens are checked for the unknown token before a run
UNK_SAMPLE = 200
#: a tokenizer that maps more than this share of those tokens to its unknown token is refused
MAX_UNK_SHARE = 0.5


def special_tokens_added(tokenizer: Any) -> int:
    """How many special tokens the tokenizer adds to one text ([CLS] and [SEP]: 2)."""
    if isinstance(tokenizer, VocabularyTokenizer):
        return 2
    count = getattr(tokenizer, "num_special_tokens_to_add", None)
    try:
        return int(count(pair=False)) if callable(count) else 0
    except Exception:  # pragma: no cover - a tokenizer that cannot tell
        return 0


def check_max_length(model: nn.Module, tokenizer: Any, max_length: int) -> None:
    """``PipelineError`` naming ``--max-length`` when it exceeds :func:`max_positions` or leaves no room
    for a token after the tokenizer's special tokens."""
    limit = max_positions(model)
    if limit is not None and max_length > limit[0]:
        raise PipelineError(f"--max-length {max_length} is more than the model takes: at most {limit[0]} tokens "
                            f"({limit[1]}); use --max-length {limit[0]} or less")
    specials = special_tokens_added(tokenizer)
    if max_length <= specials:
        raise PipelineError(f"--max-length {max_length} leaves no room for a word: the tokenizer adds {specials} "
                            "special tokens to every text")


def check_vocabulary_size(model: nn.Module, tokenizer: Any) -> None:
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
class TextScan:
    """What tokenizing every text says before the run.

    Attributes:
        kept, dropped: indices of the texts with at least one real (non-special, non-padding) token, and of the
            others (left out).
        truncated: indices of the texts longer than ``max_length`` tokens (special tokens included), cut to it.
        unknown_share: share of the real tokens of the first :data:`UNK_SAMPLE` texts that are the tokenizer's
            unknown token (None when it has none or there are no real tokens).
        n_items: the number of real tokens of every text (after truncation): the items the tests score.
    """

    kept: list[int]
    dropped: list[int]
    truncated: list[int]
    unknown_share: float | None
    n_items: list[int] = field(default_factory=list)


def scan_texts(tokenizer: Any, texts: Sequence[str], max_length: int, batch: int = 256) -> TextScan:
    """Tokenize ``texts`` at ``max_length`` (and count their tokens at ``max_length + 1`` to see which were cut):
    :class:`TextScan`."""
    kept, dropped, truncated, n_items = [], [], [], []
    unk_id = getattr(tokenizer, "unk_token_id", None)
    n_unknown = n_real = 0
    for a in range(0, len(texts), batch):
        part = texts[a: a + batch]
        enc = encode_texts(tokenizer, part, max_length).inputs
        real = enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()
        for i, n in enumerate(real.sum(-1).tolist()):
            (kept if n > 0 else dropped).append(a + i)
            n_items.append(int(n))
        longer = token_counts(tokenizer, part, max_length + 1)
        truncated += [a + i for i, n in enumerate(longer) if n > max_length]
        if a < UNK_SAMPLE and unk_id is not None:
            sample = real[: UNK_SAMPLE - a]
            n_real += int(sample.sum())
            n_unknown += int((sample & (enc["input_ids"][: UNK_SAMPLE - a] == int(unk_id))).sum())
    return TextScan(kept, dropped, truncated, n_unknown / n_real if n_real else None, n_items)


def check_unknown_share(tokenizer: Any, scan: TextScan, n_texts: int) -> None:
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


def probe(model: nn.Module, enc: Encoded, config: EvaluationConfig) -> tuple[str, dict[str, str], list[str]]:
    """Check, on the first example, which methods and evaluators apply to the model.

    Returns ``(query, skipped, notes)``: the query row for the attention methods
    (:func:`attnfaith.evaluators.selection.auto_query` of the tested layer; ``"cls"`` without attention),
    ``{name: reason}`` of what cannot run, and notes for the report. Without a reachable attention layer every
    method that ``reads_attention``, every evaluator that ``needs_attention`` and every ``attention_parts`` key is
    skipped; then each configured method's ``check`` runs. ``PipelineError`` for a ``--layer`` out of range.
    """
    from attnfaith.attention import AttentionTap, AttentionUnreachableError
    from attnfaith.evaluators.selection import auto_query

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
        evaluators = [registry.evaluator_spec(e) for e in registry.evaluator_names()]
        for name in registry.method_names():
            if registry.method_spec(name).reads_attention:
                skipped[name] = reason
        for spec in evaluators:
            if spec.needs_attention:
                skipped[spec.name] = reason
        for spec in evaluators:
            for part in spec.attention_parts:
                skipped[part] = reason
        layers = ()
    for name in config.methods:
        spec = registry.method_spec(name)
        if spec.check is not None and name not in skipped:
            reason = spec.check(model, batch, query, layers)
            if reason is not None:
                skipped[name] = reason
    return query, skipped, notes


def attention_parts() -> set[str]:
    """Every skip key of the registered evaluators' ``attention_parts``."""
    return {p for e in registry.evaluator_names() for p in registry.evaluator_spec(e).attention_parts}
