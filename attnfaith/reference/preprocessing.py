"""Text preprocessing for the reference models' word vocabulary, as Jain & Wallace (2019) prepared raw text.

Jain & Wallace's code (successar/AttentionExplanation, ``preprocess/vectorizer.py::cleaner``, used for AG News,
20 Newsgroups and the other raw-text datasets) collapses whitespace, splits the text into spaCy tokens, lowercases
every token and replaces every token that holds a digit by ``qqq``; the vocabulary is then the space-separated words
of the cleaned text (``Vectorizer``: ``text.split(' ')``, sklearn ``CountVectorizer(min_df=...)``). Their SST file
was made by another route (tree leaves, ``\\W`` → space, spaCy, lowercase; **digits kept**), and is shipped
preprocessed (``../shared/data/sst/sst_dataset.csv``).

:class:`Preprocessing` holds the choices; its defaults are the ones that leave an already preprocessed file such as
SST's unchanged token for token (``tests/reference/test_preprocessing.py`` checks this on the SST file):

* ``html=True``: HTML entities decoded (``&amp;`` → ``&``, ``&#39;`` → ``'``, and the ampersand-less ``#39;`` of
  AG News' CSV), ``<br />`` line breaks (IMDB) replaced by a space. Not in Jain & Wallace's ``cleaner``: with
  it, an entity becomes the tokens ``&``, ``quot``, ``;``;
* ``tokenizer="regex"``: :func:`regex_tokenize`, a spaCy-like English tokeniser (punctuation split off, ``n't`` and
  the clitics ``'s 're 've 'll 'd 'm`` separate, abbreviations ``u.s.``, numbers ``3.5`` and URLs kept whole);
  ``"whitespace"`` splits on whitespace only (the recipe's behaviour before these options existed);
* ``lowercase=True``: every token lowercased (Jain & Wallace: always);
* ``digits="keep"``: tokens with digits kept as they are (Jain & Wallace's SST file); ``"qqq"`` replaces each by
  ``qqq`` (their ``cleaner``: pass it for AG News, 20 Newsgroups, IMDB, as docs/replication.md's recipes do). It
  is not the default because it would change 462 of SST's 9,613 sentences.

The vocabulary's minimum counts (``min_count``, ``min_df``) and the length filters (``min_tokens``,
``max_tokens``) are options of :class:`~attnfaith.reference.config.ReplicationConfig`; lengths are counted in the
tokens made here.
"""

from __future__ import annotations

import html
import re
from dataclasses import asdict, dataclass
from typing import Iterable

__all__ = ["Preprocessing", "TOKENIZERS", "DIGIT_RULES", "regex_tokenize", "decode_html"]

#: the tokenisers :class:`Preprocessing` knows
TOKENIZERS = ("regex", "whitespace")
#: what :class:`Preprocessing` does with tokens holding a digit
DIGIT_RULES = ("keep", "qqq")

_APOS = "['\u2019]"
_TOKEN = re.compile(
    rf"""
      (?:https?://|www\.)[^\s<>"]*[^\s<>".,;:!?)\]'\u2019]   # URLs, trailing punctuation left out
    | (?:[^\W\d_]\.){{2,}}                                    # abbreviations: u.s. e.g.
    | \d+(?:[.,:/]\d+)+                                       # numbers with separators: 3.5 1,000 10:30 9/11
    | \w+(?=n{_APOS}t(?!\w))                                  # do|n't  ca|n't
    | n{_APOS}t(?!\w)                                         # n't
    | {_APOS}(?:s|re|ve|ll|d|m)(?!\w)                         # 's 're 've 'll 'd 'm
    | \w+                                                     # words (letters, digits, underscore)
    | ([^\w\s])\1*                                            # other symbols; a run of one symbol (... --) is one
    """,
    re.VERBOSE | re.IGNORECASE,
)
_BR = re.compile(r"<br\s*/?\s*>", re.IGNORECASE)
_BARE_NUMERIC_ENTITY = re.compile(r"(?<![&\w])#(\d{1,6});")  # AG News: " #39;s" for " 's"


def regex_tokenize(text: str) -> list[str]:
    """Split ``text`` into spaCy-like English tokens (case kept).

    Rules, in order of precedence: URLs (``http://…``, ``www.…``); abbreviations of single letters with dots
    (``U.S.``); numbers with inner ``. , : /`` (``3.5``, ``1,000``); the negation ``n't`` split from its word
    (``don't`` → ``do n't``, ``can't`` → ``ca n't``, as spaCy); the clitics ``'s 're 've 'll 'd 'm``; runs of word
    characters (``\\w+``: letters, digits, underscore); any other character on its own, a run of the same one
    (``...``, ``--``, ``!!``) as one token. Whitespace separates tokens and is dropped. Differences from spaCy: no
    exceptions list (``o'clock`` → ``o ' clock``), hyphenated words always split (``well-known`` → ``well - known``),
    emoticons split. On text whose tokens are all ``\\w+`` (SST as Jain & Wallace ship it) it equals
    ``text.split()``.
    """
    return [m.group(0) for m in _TOKEN.finditer(text)]


def decode_html(text: str) -> str:
    """``text`` with HTML entities decoded (``html.unescape``: ``&amp;``, ``&quot;``, ``&#39;``, ``&lt;``, ...), the
    ampersand-less numeric form ``#39;`` of AG News' CSV decoded too, and ``<br>`` / ``<br />`` replaced by a
    space (IMDB reviews)."""
    if "&" not in text and "#" not in text and "<" not in text:
        return text
    text = _BR.sub(" ", text)
    text = _BARE_NUMERIC_ENTITY.sub(lambda m: html.unescape(f"&#{m.group(1)};"), text)
    return html.unescape(text)


@dataclass(frozen=True)
class Preprocessing:
    """How raw text becomes the reference models' words (see the module docstring for each choice and its
    source). :meth:`tokenize` gives the tokens, :meth:`clean` the space-joined tokens that the vocabulary splits on
    spaces (Jain & Wallace's ``Vectorizer``).

    Order: HTML decoding, tokenisation, lowercasing of each token, then the digit rule (Jain & Wallace's
    ``cleaner``: spaCy on the original case, ``t.text.lower()``, then ``qqq``).
    """

    lowercase: bool = True
    tokenizer: str = "regex"
    digits: str = "keep"
    html: bool = True

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        if self.digits not in DIGIT_RULES:
            raise ValueError(f"digits must be one of {DIGIT_RULES}, got {self.digits!r}")
        for name in ("lowercase", "html"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")

    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text`` under these choices."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if self.html:
            text = decode_html(text)
        tokens = regex_tokenize(text) if self.tokenizer == "regex" else text.split()
        if self.lowercase:
            tokens = [t.lower() for t in tokens]
        if self.digits == "qqq":
            tokens = ["qqq" if any(c.isdigit() for c in t) else t for t in tokens]
        return tokens

    def clean(self, text: str) -> str:
        """``" ".join(self.tokenize(text))``: the text as the vocabulary sees it."""
        return " ".join(self.tokenize(text))

    def clean_all(self, texts: Iterable[str]) -> list[str]:
        """:meth:`clean` of every text."""
        return [self.clean(t) for t in texts]

    def to_dict(self) -> dict:
        """The choices as a plain dict (``results.json``)."""
        return asdict(self)

    def describe(self) -> str:
        """One line: ``"regex tokens, lowercased, digits kept, HTML entities decoded"``."""
        return ", ".join([
            f"{self.tokenizer} tokens",
            "lowercased" if self.lowercase else "case kept",
            "digits kept" if self.digits == "keep" else "tokens with digits -> qqq",
            "HTML entities decoded" if self.html else "HTML entities kept",
        ])
