"""A raw-text dataset built from the data at hand, to test that the replication recipe generalises beyond SST.

``sst2_raw``: the longest phrases of GLUE SST-2's phrase-level training file (``sst2/train.tsv``, 67,349 labelled
phrases of the Stanford Sentiment Treebank's *training* sentences), turned back into text as a web page would hold
it, then re-split. Built by :func:`build_sst2_raw` (``python -m attnfaith.reference.datasets --out out/sst2_raw.csv``;
the data is never committed):

1. **Rows.** Phrases of at least ``min_words`` (8) whitespace tokens that are *maximal*: not contained (on token
   boundaries) in another phrase of the file. These are the treebank's whole sentences and the largest labelled
   parts of sentences that SST-2 dropped as neutral; no row is part of another, so no test row is a fragment of a
   training row. Duplicates are dropped.
2. **Text restored** by a fixed rule (:func:`restore_text`): the tokens are joined; no space before ``, . ! ? ; :
   ) %`` and the clitics ``'s n't 're 've 'll 'd 'm``, none after ``( $``; `````` and ``''`` become ``"``; the first
   letter of the text and of every word after ``. ! ?`` is capitalised, and so is the pronoun ``i``; a text not
   ending in ``. ! ? " )`` gets a final ``.``; ``&`` and ``"`` are written as the HTML entities ``&amp;`` and
   ``&quot;`` (as in scraped news text such as AG News). Names stay lowercase: the rule cannot know them.
3. **Splits**: a seeded shuffle, 80 % train / 10 % dev / 10 % test (column ``exp_split``).

The result differs from Jain & Wallace's SST file in what the issue is about: case, punctuation attached to words,
clitics inside words, entities. Its rows come from SST's training sentences, not its test sentences, so it shares
SST's domain (film reviews) and vocabulary; it is a test of the preprocessing, not of a new domain.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
from pathlib import Path
from typing import Sequence

from attnfaith.reference.data import data_dir, read_table

__all__ = ["restore_text", "maximal_phrases", "build_sst2_raw"]

_NO_SPACE_BEFORE = {",", ".", "!", "?", ";", ":", ")", "%", "...", "'s", "n't", "'re", "'ve", "'ll", "'d", "'m",
                    "''"}
_NO_SPACE_AFTER = {"(", "$", "``"}
_END = (".", "!", "?", '"', ")")
_CAPITAL_AFTER = re.compile(r"([.!?]\s+)([a-z])")


def restore_text(phrase: str) -> str:
    """The text of a tokenised, lowercased SST-2 phrase as it would be written (the rule of the module docstring):
    ``"it 's a charming , often affecting journey "`` → ``"It's a charming, often affecting journey."``."""
    tokens = phrase.split()
    out = ""
    for i, tok in enumerate(tokens):
        if tok == "i":
            tok = "I"
        glue = i == 0 or tok in _NO_SPACE_BEFORE or tokens[i - 1] in _NO_SPACE_AFTER
        out += ("" if glue else " ") + tok
    out = out.replace("``", '"').replace("''", '"')
    if not out:
        return out
    out = out[0].upper() + out[1:]
    out = _CAPITAL_AFTER.sub(lambda m: m.group(1) + m.group(2).upper(), out)
    if not out.endswith(_END):
        out += "."
    return out.replace("&", "&amp;").replace('"', "&quot;")


def maximal_phrases(phrases: Sequence[str], min_words: int = 8) -> list[int]:
    """Indices of the distinct phrases of at least ``min_words`` tokens that are not contained, on token
    boundaries, in another (longer) phrase of ``phrases``; in the order of ``phrases`` (first of duplicates)."""
    norm = [" ".join(p.split()) for p in phrases]
    longest_first = sorted(range(len(norm)), key=lambda i: -len(norm[i]))
    kept: list[int] = []
    by_first_words: dict[tuple[str, ...], list[int]] = {}
    seen: set[str] = set()
    k = max(1, min_words)
    for i in longest_first:
        words = norm[i].split()
        if len(words) < min_words or norm[i] in seen:
            continue
        seen.add(norm[i])
        head, padded = tuple(words[:k]), f" {norm[i]} "
        if any(padded in f" {norm[j]} " for j in by_first_words.get(head, ())):
            continue
        kept.append(i)
        for s in range(len(words) - k + 1):  # every k-gram of a kept phrase points to it
            by_first_words.setdefault(tuple(words[s:s + k]), []).append(i)
    return sorted(kept)


def build_sst2_raw(out: str | Path, data_root: str | Path | None = None, min_words: int = 8, seed: int = 0,
                   fractions: tuple[float, float] = (0.8, 0.1)) -> Path:
    """Write the ``sst2_raw`` dataset (module docstring) to the CSV ``out`` (columns ``text,label,exp_split``) and
    return its path. ``data_root``: the shared data folder (default :func:`attnfaith.reference.data.data_dir`);
    ``fractions``: train and dev shares, the rest is test."""
    root = Path(data_root) if data_root is not None else data_dir()
    if root is None or not (root / "sst2" / "train.tsv").is_file():
        raise FileNotFoundError(f"sst2/train.tsv not found under {root} (pass data_root or set ATTNFAITH_DATA)")
    ds = read_table(root / "sst2" / "train.tsv", "sentence", "label")
    keep = maximal_phrases(ds.texts, min_words)
    order = list(keep)
    random.Random(seed).shuffle(order)
    n_train, n_dev = int(round(fractions[0] * len(order))), int(round(fractions[1] * len(order)))
    split = {i: ("train" if r < n_train else "dev" if r < n_train + n_dev else "test") for r, i in enumerate(order)}
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "exp_split"])
        for i in keep:
            w.writerow([restore_text(ds.texts[i]), ds.labels[i], split[i]])
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m attnfaith.reference.datasets --out out/sst2_raw.csv [--data-root DIR] [--min-words 8]``."""
    p = argparse.ArgumentParser(description="Build the sst2_raw dataset (raw-text SST-2 sentences, re-split).")
    p.add_argument("--out", required=True)
    p.add_argument("--data-root", default=None)
    p.add_argument("--min-words", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    path = build_sst2_raw(args.out, args.data_root, args.min_words, args.seed)
    print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
