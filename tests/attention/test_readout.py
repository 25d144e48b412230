"""The readout path (attnfaith.attention.readout): last-layer variants computed at the rows the head reads only.

Reference: the plain path — complete forwards of every variant through the tap (``prefix=False``) and the plain
one-forward-per-variant loops of attnfaith.testing — on all twelve architectures of the foundation tests. Integers
(removal counts, flips, flip tables) must be equal, curves and TVDs equal to 1e-5. Where the readout path does not
apply (an unknown family, a head that reads other positions, a wrong layout, a user forward), it must say why and
the results must still be the plain path's.
"""

from __future__ import annotations

import pytest
import torch
from transformers import BertForSequenceClassification, BertTokenizerFast

from attnfaith import ErasureFlip, PermutationTVD, SingleWeightErasure
from attnfaith._inputs import call_model, prepare_batch
from attnfaith.attention import AttentionTap
from attnfaith.attention import readout as readout_module
from attnfaith.attention.readout import FAMILIES, Family
from attnfaith.engine import VariantRunner
from attnfaith.evaluators._variants import AttentionVariants
from attnfaith.plain_loops import plain_erasure_flip, plain_permutation_tvd
from attnfaith.testing import ARCHITECTURES, tiny_batch, tiny_model

#: architectures of the zoo whose family is in the readout table (the others keep the prefix cache)
KNOWN = [a for a in ARCHITECTURES if a not in ("modernbert", "bart", "t5")]


def _scores(enc, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(enc["input_ids"].shape, generator=g)


def _readout_state(model, enc, layer=-1):
    """``(active, reason)`` of the readout path that the evaluators' variant engine builds on ``enc``."""
    batch = prepare_batch(model, enc)
    with torch.inference_mode(), AttentionTap(model, capture=None) as tap:
        call_model(model, batch.index_rows(torch.zeros(1, dtype=torch.long)))
        first = tap.resolve_layer(layer)
        with AttentionVariants(model, tap, batch, first, VariantRunner(model, max_examples_per_batch=2)) as passes:
            passes.original()
            assert tap.capture is None  # the capture the readout needed while priming is given back
            return passes.readout_active, (passes.readout.reason if passes.readout is not None else "")


def _same_erasure(fast, plain):
    assert torch.equal(fast.n_removed.nan_to_num(-1), plain.n_removed.nan_to_num(-1))
    assert torch.equal(fast.flipped, plain.flipped)
    torch.testing.assert_close(fast.curve, plain.curve, atol=1e-5, rtol=0, equal_nan=True)
    torch.testing.assert_close(fast.aopc, plain.aopc, atol=1e-5, rtol=0, equal_nan=True)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_readout_applies_to_the_known_families(arch):
    model = tiny_model(arch, num_layers=3, seed=1)
    enc = tiny_batch(arch, model, batch_size=3, seq_len=9)
    hooks = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]
    active, reason = _readout_state(model, enc)
    assert active == (arch in KNOWN), reason
    if arch not in KNOWN:
        assert "no readout family" in reason
    # an intermediate layer keeps the prefix cache
    active, reason = _readout_state(model, enc, layer=1 if arch not in ("bart", "t5") else 4)
    assert not active and reason
    assert [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()] == hooks
    assert all("forward" not in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_readout_equals_the_plain_path(arch):
    model = tiny_model(arch, num_layers=3, seed=1)
    enc = tiny_batch(arch, model, batch_size=3, seq_len=9)
    scores = _scores(enc)
    plain_ef = ErasureFlip(model, prefix=False, max_examples_per_batch=5)
    plain = plain_ef.evaluate(enc, scores)
    _same_erasure(plain_erasure_flip(plain_ef, enc, scores), plain)  # the engine's plain path = the plain loop
    for chunk in (1, 5, 64):
        _same_erasure(ErasureFlip(model, max_examples_per_batch=chunk).evaluate(enc, scores), plain)
    # early exit on the readout path: the same flips, the curve up to the flip
    early = ErasureFlip(model, max_examples_per_batch=4).evaluate(enc, scores, full_curve=False)
    assert torch.equal(early.n_removed.nan_to_num(-1), plain.n_removed.nan_to_num(-1))

    for per_head in (False, True):
        fast = PermutationTVD(model, n_permutations=6, per_head=per_head, max_examples_per_batch=4).evaluate(enc)
        slow = PermutationTVD(model, n_permutations=6, per_head=per_head, prefix=False).evaluate(enc)
        assert torch.equal(fast.permutations, slow.permutations)
        torch.testing.assert_close(fast.tvd, slow.tvd, atol=1e-5, rtol=0)
    loop, _ = plain_permutation_tvd(PermutationTVD(model, n_permutations=6), enc)
    torch.testing.assert_close(PermutationTVD(model, n_permutations=6).evaluate(enc).tvd, loop, atol=1e-5, rtol=0)

    fast = SingleWeightErasure(model, max_examples_per_batch=2).evaluate(enc)
    slow = SingleWeightErasure(model, prefix=False).evaluate(enc)
    assert torch.equal(fast.flip_table, slow.flip_table)
    assert torch.equal(fast.flip_top, slow.flip_top) and torch.equal(fast.flip_random, slow.flip_random)
    torch.testing.assert_close(fast.js_top, slow.js_top, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(fast.js_random, slow.js_random, atol=1e-6, rtol=1e-4, equal_nan=True)


@pytest.mark.parametrize("arch,seed,std", [("bert", 3, 0.4), ("gpt2", 5, 0.2), ("llama", 2, 0.2)])
def test_readout_with_heads_and_flipping_models(arch, seed, std):
    """Models whose decisions flip, erasing every head or chosen heads only: the readout path still agrees."""
    model = tiny_model(arch, seed=seed, std=std)
    enc = tiny_batch(arch, model, batch_size=4, seq_len=9, lengths=[9, 6, 4, 7], seed=3)
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, enc["input_ids"].shape, generator=g).float()  # ties: lower position first
    for heads in (None, [0, 2]):
        plain = ErasureFlip(model, heads=heads, prefix=False).evaluate(enc, scores)
        fast = ErasureFlip(model, heads=heads, max_examples_per_batch=7).evaluate(enc, scores)
        _same_erasure(fast, plain)
        if heads is None:
            assert bool(plain.flipped.any()), "the comparison needs some decision flips"


def test_readout_on_a_tokenizer_batch_with_token_types():
    words = ["good", "bad", "film", "plot", "great", "dull", "acting", "the", "a", "was"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    enc = tok(["the film was good", "a dull plot", "great acting the film was bad"], ["a plot", "good", "bad"],
              padding=True, return_tensors="pt")
    assert bool((enc["token_type_ids"] == 1).any())
    model = tiny_model("bert", num_labels=2, vocab_size=len(vocab), pad_token_id=0, seed=1, std=0.4)
    assert _readout_state(model, enc)[0]
    scores = _scores(enc, 5)
    ef = ErasureFlip(model, prefix=False)
    plain = plain_erasure_flip(ef, enc, scores)
    for chunk in (2, 9):
        _same_erasure(ErasureFlip(model, max_examples_per_batch=chunk).evaluate(enc, scores), plain)


class _MeanPoolingBert(BertForSequenceClassification):
    """A BERT whose head reads the mean of every real position (not the [CLS] pooler the table expects)."""

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        m = attention_mask[..., None].to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1)
        return self.classifier(pooled)


def test_a_head_reading_other_positions_falls_back():
    base = tiny_model("bert", seed=2)
    model = _MeanPoolingBert(base.config).eval()
    model.load_state_dict(base.state_dict())
    enc = tiny_batch("bert", model, batch_size=3, seq_len=9)
    active, reason = _readout_state(model, enc)
    assert not active and "head reads positions other than" in reason
    scores = _scores(enc, 1)
    _same_erasure(ErasureFlip(model).evaluate(enc, scores), ErasureFlip(model, prefix=False).evaluate(enc, scores))


def test_a_wrong_layout_falls_back(monkeypatch):
    """A table entry that forgets the feed-forward: the equality check on the original forward refuses it."""
    model = tiny_model("bert", seed=2)
    enc = tiny_batch("bert", model, batch_size=3, seq_len=9)
    good = FAMILIES["bert"]
    wrong = Family("bert-without-ffn", good.attention, good.values,
                   lambda block, ctx, h: block.attention.output(ctx, h), good.rows, good.head, good.needs)
    monkeypatch.setitem(FAMILIES, "bert", wrong)
    active, reason = _readout_state(model, enc)
    assert not active and "does not reproduce the full forward" in reason
    scores = _scores(enc, 2)
    _same_erasure(ErasureFlip(model).evaluate(enc, scores), ErasureFlip(model, prefix=False).evaluate(enc, scores))


def test_a_wrong_intervention_is_caught_by_the_variant_check(monkeypatch):
    """If the readout path applied the intervention wrongly (here: not at all), the comparison of the first variants
    with the tap's refuses it and every variant runs through the tap."""
    model = tiny_model("gpt2", seed=5)
    enc = tiny_batch("gpt2", model, batch_size=3, seq_len=9)
    monkeypatch.setattr(readout_module, "apply_interventions", lambda p, *args, **kwargs: p)
    scores = _scores(enc, 4)
    ef = ErasureFlip(model)
    _same_erasure(ef.evaluate(enc, scores), plain_erasure_flip(ErasureFlip(model, prefix=False), enc, scores))


def test_unknown_family_and_user_forward_fall_back():
    model = tiny_model("modernbert", seed=1)
    enc = tiny_batch("modernbert", model)
    assert not _readout_state(model, enc)[0]
    bert = tiny_model("bert", seed=1)
    enc = tiny_batch("bert", bert)
    forward = lambda ids, mask: bert(input_ids=ids, attention_mask=mask).logits * 2.0  # noqa: E731
    scores = _scores(enc, 6)
    fast = ErasureFlip(bert, forward_func=forward).evaluate(enc, scores)
    plain = ErasureFlip(bert, forward_func=forward, prefix=False).evaluate(enc, scores)
    _same_erasure(fast, plain)


def test_readout_off_keeps_the_prefix_path():
    model = tiny_model("bert", seed=1)
    enc = tiny_batch("bert", model)
    scores = _scores(enc, 7)
    plain = ErasureFlip(model, prefix=False).evaluate(enc, scores)
    _same_erasure(ErasureFlip(model, readout=False).evaluate(enc, scores), plain)
