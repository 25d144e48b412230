"""The word-level vocabulary of Jain & Wallace's (2019) reference models (``<pad>``=0, ``<unk>``=1, ``<sos>``=2,
``<eos>``=3; every sentence gets ``<sos>`` ... ``<eos>``), as their ``vectorizer``."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch

from attnfaith.reference.data import TextDataset

__all__ = ["Vocabulary"]


class Vocabulary:
    """Word-level vocabulary for the reference models (whitespace tokens, optional lowercasing).

    Ids 0..3 are ``<pad>``, ``<unk>``, ``<sos>``, ``<eos>`` (as in Jain & Wallace's vectorizer); words follow,
    most frequent first (ties alphabetical). :meth:`encode` wraps every text in ``<sos>`` ... ``<eos>`` and right-pads
    with ``<pad>``; :attr:`special_token_ids` = ``(pad, sos, eos)`` are the ids the reference models never attend to
    (``<unk>`` is a real word position and is attended).
    """

    PAD, UNK, SOS, EOS = "<pad>", "<unk>", "<sos>", "<eos>"
    SPECIALS = (PAD, UNK, SOS, EOS)
    pad_token_id, unk_token_id, sos_token_id, eos_token_id = 0, 1, 2, 3

    def __init__(self, words: Iterable[str] = (), lowercase: bool = False) -> None:
        self.lowercase = bool(lowercase)
        self.itos: list[str] = list(self.SPECIALS)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        for w in words:
            if w not in self.stoi:
                self.stoi[w] = len(self.itos)
                self.itos.append(w)

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        min_count: int = 1,
        max_size: int | None = None,
        lowercase: bool = False,
        min_df: int = 1,
    ) -> "Vocabulary":
        """Vocabulary of the words occurring at least ``min_count`` times in at least ``min_df`` of the texts
        (document frequency: Jain & Wallace's ``CountVectorizer(min_df=...)``); at most ``max_size`` words
        (specials not counted), most frequent first.

        ``texts`` are split on whitespace (Jain & Wallace's ``Vectorizer`` splits on spaces): preprocess raw text
        first with :meth:`attnfaith.reference.preprocessing.Preprocessing.clean_all`.
        """
        if min_count < 1 or min_df < 1:
            raise ValueError(f"min_count and min_df must be >= 1, got {min_count} and {min_df}")
        vocab = cls(lowercase=lowercase)
        counts: Counter = Counter()
        docs: Counter = Counter()
        for t in texts:
            toks = vocab.tokenize(t)
            counts.update(toks)
            docs.update(set(toks))
        for s in cls.SPECIALS:
            counts.pop(s, None)
        words = sorted((w for w, c in counts.items() if c >= min_count and docs[w] >= min_df),
                       key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max(0, int(max_size))]
        return cls(words, lowercase=lowercase)

    def tokenize(self, text: str) -> list[str]:
        return (text.lower() if self.lowercase else text).split()

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, lowercase={self.lowercase})"

    @property
    def special_token_ids(self) -> tuple[int, ...]:
        """Ids never attended by the reference models: ``(<pad>, <sos>, <eos>)`` = ``(0, 2, 3)``."""
        return (self.pad_token_id, self.sos_token_id, self.eos_token_id)

    def token_to_id(self, token: str) -> int:
        return self.stoi.get(token, self.unk_token_id)

    def id_to_token(self, i: int) -> str:
        return self.itos[int(i)]

    def encode_ids(self, text: str, add_special: bool = True) -> list[int]:
        ids = [self.token_to_id(t) for t in self.tokenize(text)]
        return [self.sos_token_id, *ids, self.eos_token_id] if add_special else ids

    def encode(
        self, texts: str | Sequence[str], add_special: bool = True, max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """``dict(input_ids=LongTensor[B, T], attention_mask=LongTensor[B, T])``, right-padded with ``<pad>``.

        ``max_length`` caps the length including ``<sos>``/``<eos>`` (words are cut from the end; ``<eos>`` stays).
        """
        if isinstance(texts, str):
            texts = [texts]
        rows = []
        for t in texts:
            ids = self.encode_ids(t, add_special=False)
            if max_length is not None:
                room = max_length - (2 if add_special else 0)
                if room < 0:
                    raise ValueError(f"max_length={max_length} leaves no room for <sos> and <eos>")
                ids = ids[:room]
            rows.append([self.sos_token_id, *ids, self.eos_token_id] if add_special else ids)
        width = max([len(r) for r in rows] + [1])
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
                attention_mask[i, : len(r)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def encode_dataset(
        self, dataset: TextDataset, add_special: bool = True, max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """:meth:`encode` of ``dataset.texts`` plus ``labels`` (LongTensor[B]) when the dataset has labels; the
        result can be passed to :func:`attnfaith.reference.training.train_classifier` directly."""
        enc = self.encode(dataset.texts, add_special=add_special, max_length=max_length)
        if dataset.labels is not None:
            enc["labels"] = torch.tensor(dataset.labels, dtype=torch.long)
        return enc

    def tokens(self, ids) -> list[str] | list[list[str]]:
        """The token string at every position (specials and padding included, aligned with ``ids``)."""
        t = torch.as_tensor(ids)
        if t.dim() == 2:
            return [[self.itos[int(i)] for i in row] for row in t]
        return [self.itos[int(i)] for i in t.reshape(-1)]

    def decode(self, ids, skip_special: bool = True) -> str | list[str]:
        """Text of a row of ids (``str``) or of a batch (``list[str]``); ``skip_special`` drops pad/sos/eos."""
        t = torch.as_tensor(ids)
        if t.dim() == 2:
            return [self.decode(row, skip_special=skip_special) for row in t]
        skip = set(self.special_token_ids) if skip_special else set()
        return " ".join(self.itos[int(i)] for i in t.reshape(-1) if int(i) not in skip)

    def embedding_matrix(
        self, vectors: Mapping[str, Sequence[float]], dim: int | None = None, seed: int = 0
    ) -> torch.Tensor:
        """``[len(self), dim]`` initial embeddings: ``vectors[word]`` where known, N(0, 1) elsewhere (as JW), zeros
        for ``<pad>``. Returns the matrix; how many words were found is in ``self.last_embedding_coverage``."""
        if dim is None:
            first = next(iter(vectors.values()), None)
            if first is None:
                raise ValueError("vectors is empty and dim is not given")
            dim = len(first)
        g = torch.Generator().manual_seed(seed)
        out = torch.randn(len(self), dim, generator=g)
        found = 0
        for i, w in enumerate(self.itos):
            v = vectors.get(w)
            if v is not None:
                out[i] = torch.as_tensor(v, dtype=torch.float32)
                found += 1
        out[self.pad_token_id] = 0.0
        self.last_embedding_coverage = found / max(1, len(self) - len(self.SPECIALS))
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON (``{"format": "attnfaith.Vocabulary", "tokens": [...], ...}``)."""
        payload = {"format": "attnfaith.Vocabulary", "version": 1, "lowercase": self.lowercase, "tokens": self.itos}
        Path(path).write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no such file: {p}")
        try:
            payload = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{e.lineno}: not a vocabulary JSON file: {e.msg}") from None
        if not isinstance(payload, dict) or payload.get("format") != "attnfaith.Vocabulary":
            raise ValueError(f"{p}: not an attnfaith.Vocabulary file")
        tokens = payload["tokens"]
        if tuple(tokens[: len(cls.SPECIALS)]) != cls.SPECIALS:
            raise ValueError(f"{p}: the first tokens must be {cls.SPECIALS}")
        return cls(tokens[len(cls.SPECIALS) :], lowercase=bool(payload.get("lowercase", False)))
