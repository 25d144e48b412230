"""Evaluators built Captum's way, from a ``forward_func`` plus the model (for the attention): the user's function is
what every original and perturbed input goes through. References: the evaluator on the model itself, a hand
computation of the tempered probabilities, and a count of the function's calls."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn
from transformers import BertTokenizerFast

from attnfaith import ErasureFlip, KendallTau, PermutationTVD, SingleWeightErasure, UniformAttention
from attnfaith._inputs import UserForward
from attnfaith.testing import tiny_model

WORDS = ["good", "bad", "film", "plot", "great", "dull", "acting", "the", "a", "was", "not", "at", "all"]
TEXTS = ["the film was good", "a dull plot", "great acting the film was bad", "not good at all", "bad bad film"]


@pytest.fixture(scope="module")
def setup():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    model = tiny_model("bert", num_labels=2, vocab_size=len(vocab), pad_token_id=0, seed=4).eval()
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    return model, tok, enc


def _counting(fn):
    """``fn`` that records the batch size of every call (and shows ``fn``'s signature)."""
    calls = []

    @functools.wraps(fn)
    def forward(*args):
        calls.append(args[0].shape[0])
        return fn(*args)

    forward.calls = calls
    return forward


DECISIONS = ("prediction", "n_removed", "flipped", "n_items")


@pytest.mark.parametrize("level", ["token", "attention"])
def test_probability_forward_gives_the_model_decisions(setup, level):
    model, tok, enc = setup
    fwd = _counting(lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits.softmax(-1))
    got = ErasureFlip(model, level=level, forward_func=fwd).evaluate(enc)
    ref = ErasureFlip(model, level=level).evaluate(enc)
    assert fwd.calls  # the user's function ran every forward
    for name in DECISIONS:
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), equal_nan=True)
    torch.testing.assert_close(got.curve, ref.curve, equal_nan=True, rtol=1e-5, atol=1e-6)


def test_tempered_forward_is_what_gets_perturbed(setup):
    """softmax(logits / 2): the decisions stay (argmax is unchanged), the probabilities are σ(logit(p) / 2)."""
    model, tok, enc = setup
    fwd = lambda ids, mask: (model(input_ids=ids, attention_mask=mask).logits / 2).softmax(-1)  # noqa: E731
    got = ErasureFlip(model, level="token", forward_func=fwd).evaluate(enc)
    ref = ErasureFlip(model, level="token").evaluate(enc)
    for name in DECISIONS:
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), equal_nan=True)
    p = ref.curve.double()
    expected = torch.sigmoid(torch.log(p / (1 - p)) / 2)
    torch.testing.assert_close(got.curve.double(), expected, equal_nan=True, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got.curve[:, 0], ref.curve[:, 0])


def test_leave_one_out_reference_through_the_forward(setup):
    model, tok, enc = setup
    fwd = _counting(lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits.softmax(-1))
    got = KendallTau(model, reference="loo", forward_func=fwd).evaluate(enc)
    ref = KendallTau(model, reference="loo").evaluate(enc)
    assert len(fwd.calls) >= 2  # the original batch and the leave-one-out variants
    torch.testing.assert_close(got.reference, ref.reference, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got.tau, ref.tau, equal_nan=True)


def test_forward_on_inputs_embeds(setup):
    model, tok, enc = setup
    fwd = _counting(lambda inputs_embeds, attention_mask, token_type_ids: model(
        inputs_embeds=inputs_embeds, attention_mask=attention_mask, token_type_ids=token_type_ids).logits)
    assert UserForward(fwd, model).inputs == "embeddings"
    for make in (lambda **k: ErasureFlip(model, level="token", **k), lambda **k: ErasureFlip(model, level="attention", **k),
                 lambda **k: PermutationTVD(model, n_permutations=4, **k), lambda **k: SingleWeightErasure(model, **k),
                 lambda **k: UniformAttention(model, **k), lambda **k: KendallTau(model, reference="gradient", **k)):
        got, ref = make(forward_func=fwd).evaluate(enc), make().evaluate(enc)
        for key, value in ref.records()[0].items():
            other = got.records()[0][key]
            if isinstance(value, float) and not math.isnan(value):
                assert other == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert fwd.calls and all(n >= 1 for n in fwd.calls)


def test_embeddings_forward_needs_an_embedding_module():
    class NoEmbeddings(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Linear(2, 2)

        def forward(self, input_ids, attention_mask=None):  # pragma: no cover - never run
            return self.w(input_ids.float()[..., :2])

    with pytest.raises(ValueError, match="forward_func takes embeddings .*inputs_embeds.*no get_input_embeddings"):
        ErasureFlip(NoEmbeddings(), forward_func=lambda inputs_embeds, mask: inputs_embeds.sum(1))


def test_sigmoid_probability_forward(setup):
    """One probability per row (a sigmoid head): forward_output='probs' reads it as P(class 1)."""
    model, tok, enc = setup
    fwd = lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits.softmax(-1)[:, 1]  # noqa: E731
    got = ErasureFlip(model, level="token", forward_func=fwd, forward_output="probs").evaluate(enc)
    ref = ErasureFlip(model, level="token").evaluate(enc)
    for name in DECISIONS:
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), equal_nan=True)
    torch.testing.assert_close(got.curve, ref.curve, equal_nan=True, rtol=1e-4, atol=1e-5)


def test_captum_batch_size_alias(setup):
    model, tok, enc = setup
    fwd = _counting(lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits)
    ev = ErasureFlip(model, level="token", forward_func=fwd, internal_batch_size=2)
    assert ev.runner.max_examples_per_batch == 2
    ev.evaluate(enc)
    # after the layer probe (1 row) and the originals (5 rows), every forward holds at most 2 variants
    assert fwd.calls[:2] == [1, 5] and max(fwd.calls[2:]) == 2
    fwd.calls.clear()
    ev.evaluate(enc, internal_batch_size=3)
    assert max(fwd.calls[2:]) == 3
    with pytest.raises(TypeError, match="not both"):
        ErasureFlip(model, max_examples_per_batch=2, internal_batch_size=2)
    with pytest.raises(TypeError, match="not both"):
        ev.evaluate(enc, max_examples_per_batch=2, internal_batch_size=2)


def test_bad_forward_options(setup):
    model, tok, enc = setup
    with pytest.raises(TypeError, match="forward_func must be callable"):
        ErasureFlip(model, forward_func=3)
    with pytest.raises(ValueError, match="forward_output must be one of"):
        ErasureFlip(model, forward_func=lambda i, m: i, forward_output="scores")
    with pytest.raises(TypeError, match="describe a forward_func"):
        ErasureFlip(model, forward_output="probs")
    bad = ErasureFlip(model, forward_func=lambda ids, mask: torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"forward_func returned shape \(1, 2\) for 5 inputs"):
        bad.evaluate(enc)


def test_model_left_as_found(setup):
    model, tok, enc = setup
    model.train()
    try:
        fwd = lambda inputs_embeds, mask: model(inputs_embeds=inputs_embeds, attention_mask=mask).logits  # noqa: E731
        ErasureFlip(model, level="attention", forward_func=fwd).evaluate(TEXTS, tokenizer=tok)
        assert model.training and all(p.requires_grad for p in model.parameters())
        assert model.config._attn_implementation == "eager"
    finally:
        model.eval()
