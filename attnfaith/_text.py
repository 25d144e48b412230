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

__all__ = ["VocabularyTokenizer", "Encoded", "encode_texts", "word_spans", "word_of_offsets", "token_counts", "parse_index_list"]

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
