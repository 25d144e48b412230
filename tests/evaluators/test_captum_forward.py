"""A Captum attribution is called exactly as the user built it, also on a real tokenizer batch with
``token_type_ids`` (the README's pattern). Reference: the same Captum object called directly by the test."""

from __future__ import annotations

import pytest
import torch
from captum.attr import FeatureAblation, LayerIntegratedGradients
from transformers import BertTokenizerFast

from attnfaith import ErasureFlip, KendallTau
from attnfaith.testing import tiny_model

WORDS = ["good", "bad", "film", "plot", "great", "dull", "acting", "the", "a", "was"]


@pytest.fixture(scope="module")
def bert_and_batch():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})  # a real BERT tokenizer, built offline
    enc = tok(["the film was good", "a dull plot", "great acting the film was bad"], padding=True,
              return_tensors="pt")
    assert "token_type_ids" in enc and (enc["input_ids"] >= 5).sum() >= 9  # what users hold: words, token types
    model = tiny_model("bert", num_labels=2, vocab_size=len(vocab), pad_token_id=0, seed=1).eval()
    return model, enc


def test_two_argument_forward_on_a_tokenizer_batch(bert_and_batch):
    model, enc = bert_and_batch
    forward = lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits.softmax(-1)  # noqa: E731
    lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
    table = ErasureFlip(model, level="token").compare(enc, {"integrated gradients": lig, "random": "random"})
    assert "integrated gradients" in str(table)
    fa = FeatureAblation(forward)
    res = KendallTau(model, reference=fa).evaluate(enc, attributions=lig)
    pred = model(**enc).logits.argmax(-1)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    expected = lig.attribute(ids, target=pred, additional_forward_args=(mask,)).sum(-1)
    torch.testing.assert_close(res.attributions, expected.detach(), rtol=1e-5, atol=1e-6)


def test_forward_taking_token_types_gets_them(bert_and_batch):
    model, enc = bert_and_batch
    seen = []

    def forward(ids, mask, token_type_ids):
        seen.append(token_type_ids)
        return model(input_ids=ids, attention_mask=mask, token_type_ids=token_type_ids).logits.softmax(-1)

    res = KendallTau(model, reference=FeatureAblation(forward)).evaluate(enc, attributions=FeatureAblation(forward))
    assert seen and all(torch.equal(t[: enc["token_type_ids"].shape[0]], enc["token_type_ids"]) for t in seen[:1])
    assert res.tau.shape == (3,)
