"""Turning raw texts into model inputs the same way for a HuggingFace tokenizer and for a word-level
:class:`attnfaith.reference.vocabulary.Vocabulary`, with the two things the evaluation pipeline needs besides the
tensors: the token strings (for heat-maps) and which whitespace-separated word of the text each token comes from (to
score a known rationale).

* :class:`VocabularyTokenizer` makes a :class:`~attnfaith.reference.vocabulary.Vocabulary` look like a tokenizer
  (``__call__``, ``all_special_ids``, ``convert_ids_to_tokens``, ``save_pretrained``), so the reference models go
  through exactly the same pipeline code as a HuggingFace classifier.
* :func:`encode_texts` returns an :class:`Encoded`: the model inputs (``input_ids``, ``attention_mask``,
  ``special_tokens_mask`` and any further tokenizer output such as ``token_type_ids``), the token strings and the
  word index of every token (None for special tokens and padding, or when the tokenizer cannot tell).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = ["VocabularyTokenizer", "Encoded", "encode_texts", "tokenize_texts", "is_text_input", "word_spans",
           "word_of_offsets", "token_counts", "parse_index_list"]

_INT = re.compile(r"-?\d+")


class VocabularyTokenizer:
    """A tokenizer-like wrapper around :class:`attnfaith.reference.vocabulary.Vocabulary` (whitespace words,
    ``<sos>`` … ``<eos>``, right padding with ``<pad>``).

    ``tokenizer(texts, max_length=..., return_special_tokens_mask=True)`` gives a dict with ``input_ids``,
    ``attention_mask`` and ``special_tokens_mask`` (1 on ``<pad>``, ``<sos>``, ``<eos>``; ``<unk>`` is a real word).
    """

    def __init__(self, vocab) -> None:
        self.vocab = vocab
        self.pad_token_id = vocab.pad_token_id
        self.unk_token_id = vocab.unk_token_id
        self.mask_token_id = None
        self.all_special_ids = list(vocab.special_token_ids)
        self.name_or_path = "attnfaith.Vocabulary"

    def __len__(self) -> int:
        return len(self.vocab)

    def __call__(self, texts, padding: Any = True, truncation: Any = True, max_length: int | None = None,
                 return_tensors: str | None = "pt", return_special_tokens_mask: bool = False, **_: Any) -> dict:
        enc = self.vocab.encode(texts, max_length=max_length if truncation else None)
        if return_special_tokens_mask:
            specials = torch.tensor(self.all_special_ids, dtype=enc["input_ids"].dtype)
            enc["special_tokens_mask"] = (torch.isin(enc["input_ids"], specials) | (enc["attention_mask"] == 0)).long()
        return enc

    def convert_ids_to_tokens(self, ids) -> list[str]:
        return [self.vocab.id_to_token(int(i)) for i in ids]

    def word_ids(self, texts: Sequence[str], width: int, max_length: int | None) -> list[list[int | None]]:
        """Word index of every position (``<sos>`` at 0, then one token per whitespace word, cut like ``encode``)."""
        out = []
        for text in texts:
            n = len(self.vocab.tokenize(text))
            if max_length is not None:
                n = min(n, max_length - 2)
            row: list[int | None] = [None] + list(range(n)) + [None]
            out.append(row + [None] * (width - len(row)))
        return out

    def save_pretrained(self, path) -> None:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        self.vocab.save(p / "vocab.json")


@dataclass
class Encoded:
    """Model inputs for a list of texts plus what the report needs about each token.

    Attributes:
        inputs: the mapping passed to the evaluators (``input_ids``, ``attention_mask``, ``special_tokens_mask``,
            ...), CPU tensors ``[B, T]``.
        tokens: the token string at every position, ``[B][T]``.
        word_ids: index of the whitespace-separated word of the text each position belongs to (None for special
            tokens and padding); None when the tokenizer cannot map tokens to characters (slow tokenizers).
    """

    inputs: dict[str, torch.Tensor]
    tokens: list[list[str]]
    word_ids: list[list[int | None]] | None


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the whitespace-separated words of ``text``."""
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def word_of_offsets(text: str, offsets: Sequence[Sequence[int]], special: Sequence[int]) -> list[int | None]:
    """The word (index into :func:`word_spans`) holding the first non-space character of each token."""
    spans = word_spans(text)
    ends = [e for _, e in spans]
    out: list[int | None] = []
    for (s, e), sp in zip(offsets, special):
        if sp or e <= s:
            out.append(None)
            continue
        k = bisect.bisect_right(ends, s)  # the first word ending after s
        out.append(k if k < len(spans) and spans[k][0] < e else None)
    return out


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int = 128) -> Encoded:
    """Tokenize ``texts`` (padded to the longest, truncated to ``max_length``) for the evaluation pipeline."""
    texts = list(texts)
    if isinstance(tokenizer, VocabularyTokenizer):
        enc = tokenizer(texts, max_length=max_length, return_special_tokens_mask=True)
        ids = enc["input_ids"]
        tokens = [tokenizer.convert_ids_to_tokens(row) for row in ids.tolist()]
        return Encoded(dict(enc), tokens, tokenizer.word_ids(texts, ids.shape[1], max_length))
    want_offsets = bool(getattr(tokenizer, "is_fast", False))
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                    return_special_tokens_mask=True, return_offsets_mapping=want_offsets)
    enc = dict(enc)
    offsets = enc.pop("offset_mapping", None)
    ids = enc["input_ids"]
    if "attention_mask" not in enc:
        enc["attention_mask"] = torch.ones_like(ids)
    # some tokenizers mark nothing as special in padding: padding is never an item anyway
    tokens = [list(tokenizer.convert_ids_to_tokens(row)) for row in ids.tolist()]
    word_ids = None
    if offsets is not None:
        special = (enc["special_tokens_mask"].bool() | (enc["attention_mask"] == 0)).tolist()
        word_ids = [word_of_offsets(t, off, sp) for t, off, sp in zip(texts, offsets.tolist(), special)]
    inputs = {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}
    return Encoded(inputs, tokens, word_ids)


def is_text_input(inputs: Any) -> bool:
    """Whether ``inputs`` is raw text: a ``str``, or a non-empty list / tuple of ``str`` or of ``(text, text_pair)``
    pairs of ``str`` (sentence-pair tasks such as NLI)."""
    if isinstance(inputs, str):
        return True
    if not isinstance(inputs, (list, tuple)) or not inputs:
        return False
    first = inputs[0]
    return isinstance(first, str) or (
        isinstance(first, (list, tuple)) and len(first) == 2 and all(isinstance(x, str) for x in first))


def tokenize_texts(tokenizer: Any, texts: Any, max_length: int | None = None) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Model inputs for raw ``texts`` (see :func:`is_text_input`), as a user would make them: ``tokenizer(texts,
    padding=True, truncation=..., max_length=max_length, return_tensors="pt", return_special_tokens_mask=True)``
    (pairs as ``tokenizer(firsts, seconds, ...)``); cut to ``max_length`` tokens when it is given.

    Returns the mapping of ``[B, T]`` CPU tensors and the indices of the texts that were cut. ``TypeError`` naming
    ``inputs`` for a list that mixes texts with anything else; ``ValueError`` for pairs given to a tokenizer that
    takes single texts only (:class:`VocabularyTokenizer`)."""
    rows = [texts] if isinstance(texts, str) else list(texts)
    pairs = not isinstance(rows[0], str)
    for i, row in enumerate(rows):
        ok = (isinstance(row, (list, tuple)) and len(row) == 2 and all(isinstance(x, str) for x in row)) if pairs \
            else isinstance(row, str)
        if not ok:
            what = "a (text, text_pair) pair of strings" if pairs else "a string"
            raise TypeError(f"inputs[{i}]: expected {what} like inputs[0], got {type(row).__name__} {row!r:.60}")
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a callable tokenizer (a HuggingFace tokenizer), got "
                        f"{type(tokenizer).__name__}")
    if isinstance(tokenizer, VocabularyTokenizer):
        if pairs:
            raise ValueError("inputs: text pairs need a tokenizer that takes pairs; a word vocabulary takes single texts")
        enc = tokenizer(rows, max_length=max_length, truncation=max_length is not None, return_special_tokens_mask=True)
        cut = [i for i, n in enumerate(token_counts(tokenizer, rows, 10**9)) if max_length is not None and n > max_length]
        return dict(enc), cut
    args = ([r[0] for r in rows], [r[1] for r in rows]) if pairs else (rows,)
    enc = dict(tokenizer(*args, padding=True, truncation=max_length is not None, max_length=max_length,
                         return_tensors="pt", return_special_tokens_mask=True))
    ids = enc["input_ids"]
    if "attention_mask" not in enc:
        enc["attention_mask"] = torch.ones_like(ids)
    cut: list[int] = []
    if max_length is not None:  # a row that fills max_length may have been cut: tokenize those again, uncut
        full = enc["attention_mask"].sum(-1) >= max_length
        rows_full = full.nonzero().flatten().tolist()
        if rows_full:
            again = tokenizer(*([a[i] for i in rows_full] for a in args))["input_ids"]
            cut = [i for i, r in zip(rows_full, again) if len(r) > max_length]
    return {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}, cut


def token_counts(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[int]:
    """The number of tokens (special tokens included) of each text cut to ``max_length``: the lengths
    :func:`encode_texts` gives, without its offsets and token strings."""
    texts = list(texts)
    if isinstance(tokenizer, VocabularyTokenizer):
        return tokenizer(texts, max_length=max_length)["attention_mask"].sum(-1).tolist()
    return [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]


def parse_index_list(value: Any) -> list[int]:
    """Word indices from a cell: a JSON-like list ``"[3, 7]"``, ``"3 7"``, ``"3,7"`` or a list of ints."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(m) for m in _INT.findall(str(value))]
