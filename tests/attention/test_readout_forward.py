"""Readout-restricted forwards (attnfaith.attention.readout_forward): perturbation forwards whose last block is
computed at the rows the classification head reads only.

Reference: complete forwards (``call_model``, ``readout=False``) and the plain one-forward-per-variant loops of
attnfaith.plain_loops, on all twelve architectures of the foundation tests. Integers (removal counts, flips) must be
equal, probabilities, TVDs and attributions equal to 1e-5. Where the path does not apply (an unknown family, a head
that reads other positions, a shared block, a wrong table entry, a user forward), it must say why and the results
must be the complete forwards'. The work skipped is counted with hooks (rows through the last feed-forward).
"""

from __future__ import annotations

import threading

import pytest
import torch
from transformers import BertForSequenceClassification

from attnfaith import Comprehensiveness, ErasureFlip, LeaveOneOut, Sufficiency
from attnfaith._inputs import UserForward, call_model, prepare_batch
from attnfaith.attention.readout import FAMILIES, Family
from attnfaith.attention.readout_forward import ReadoutForwards
from attnfaith.attr.ig import EmbeddingIntegratedGradients
from attnfaith.plain_loops import plain_erasure_flip
from attnfaith.testing import ARCHITECTURES, tiny_batch, tiny_model

#: architectures whose family is in the readout table and whose last block is its own module
ACTIVE = [a for a in ARCHITECTURES if a not in ("modernbert", "bart", "t5", "albert")]


def _hooks(model):
    return [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]


def _scores(enc, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(enc["input_ids"].shape, generator=g)


def _same_erasure(fast, plain):
    assert torch.equal(fast.n_removed.nan_to_num(-1), plain.n_removed.nan_to_num(-1))
    assert torch.equal(fast.flipped, plain.flipped)
    torch.testing.assert_close(fast.curve, plain.curve, atol=1e-5, rtol=0, equal_nan=True)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_readout_forwards_equal_complete_forwards(arch):
    model = tiny_model(arch, num_layers=3, seed=1)
    enc = tiny_batch(arch, model, batch_size=6, seq_len=9, lengths=[9, 5, 7, 9, 3, 8], seed=2)
    batch = prepare_batch(model, enc)
    hooks = _hooks(model)
    with torch.inference_mode():
        full = call_model(model, batch)
        with ReadoutForwards(model) as forwards:
            first = forwards(batch)
            second = forwards(batch.index_rows(torch.tensor([5, 1, 2])))
            active, reason = forwards.active, forwards.reason
    assert active == (arch in ACTIVE), reason
    if arch == "albert":
        assert "3 times in one forward" in reason
    elif arch not in ACTIVE:
        assert "no readout family" in reason
    torch.testing.assert_close(first, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(second, full[[5, 1, 2]], atol=1e-5, rtol=0)
    assert _hooks(model) == hooks
    assert all("forward" not in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("arch", ["bert", "distilbert", "deberta-v2", "gpt2", "llama"])
def test_the_last_feed_forward_runs_at_the_read_rows_only(arch):
    """The work is really skipped: the rows entering the last block's feed-forward are counted with a hook."""
    model = tiny_model(arch, num_layers=2, seed=1)
    enc = tiny_batch(arch, model, batch_size=4, seq_len=9)
    batch = prepare_batch(model, enc)
    family = FAMILIES[model.config.model_type]
    with ReadoutForwards(model) as forwards:
        ffn = {"bert": "intermediate", "deberta-v2": "intermediate", "distilbert": "ffn", "gpt2": "mlp",
               "llama": "mlp"}[arch]
        module = forwards.block.get_submodule(ffn)
        seen = []
        handle = module.register_forward_hook(lambda m, a, o: seen.append(a[0].shape[:2]))
        try:
            with torch.inference_mode():
                forwards.check(batch)
                seen.clear()
                forwards(batch)
        finally:
            handle.remove()
    assert forwards.family is family
    assert seen == [torch.Size([4, 1])]


@pytest.mark.parametrize("arch", ACTIVE + ["albert", "t5"])
def test_leave_one_out_on_the_readout_path(arch):
    model = tiny_model(arch, num_layers=3, seed=1)
    enc = tiny_batch(arch, model, batch_size=3, seq_len=9, lengths=[9, 6, 4], seed=3)
    plain = LeaveOneOut(model, batched=False).attribute(enc)  # one complete forward per row
    for chunk in (2, 64):
        fast = LeaveOneOut(model, max_examples_per_batch=chunk).attribute(enc)
        torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(LeaveOneOut(model, readout=False).attribute(enc), plain, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch,seed,std", [("bert", 3, 0.4), ("gpt2", 5, 0.2), ("llama", 2, 0.2), ("roberta", 1, 0.3)])
@pytest.mark.parametrize("erase", ["delete", "mask"])
def test_token_erasure_on_the_readout_path(arch, seed, std, erase):
    model = tiny_model(arch, seed=seed, std=std)
    enc = tiny_batch(arch, model, batch_size=4, seq_len=9, lengths=[9, 6, 4, 7], seed=3)
    scores = _scores(enc, 1)
    ef = ErasureFlip(model, level="token", erase=erase, readout=False)
    plain = plain_erasure_flip(ef, enc, scores)
    _same_erasure(ef.evaluate(enc, scores), plain)
    for chunk in (3, 64):
        fast = ErasureFlip(model, level="token", erase=erase, max_examples_per_batch=chunk).evaluate(enc, scores)
        _same_erasure(fast, plain)
    if arch == "bert":
        assert bool(plain.flipped.any()), "the comparison needs some decision flips"


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_eraser_metrics_on_the_readout_path(arch):
    model = tiny_model(arch, seed=3, std=0.3)
    enc = tiny_batch(arch, model, batch_size=4, seq_len=9, lengths=[9, 6, 4, 7], seed=3)
    scores = _scores(enc, 2)
    for cls in (Comprehensiveness, Sufficiency):
        fast = cls(model, max_examples_per_batch=3).evaluate(enc, scores)
        plain = cls(model, readout=False).evaluate(enc, scores)
        torch.testing.assert_close(fast.values, plain.values, atol=1e-5, rtol=0, equal_nan=True)
        torch.testing.assert_close(fast.aopc, plain.aopc, atol=1e-5, rtol=0, equal_nan=True)


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_integrated_gradients_on_the_readout_path(arch):
    """Forwards and gradients: the attributions equal the complete forwards' (the head's gradient never reaches the
    rows the readout path leaves out)."""
    model = tiny_model(arch, seed=2, std=0.3)
    enc = tiny_batch(arch, model, batch_size=3, seq_len=8, lengths=[8, 5, 7], seed=1)
    fast = EmbeddingIntegratedGradients(model, n_steps=8, internal_batch_size=5)
    plain = EmbeddingIntegratedGradients(model, n_steps=8, internal_batch_size=5, readout=False)
    a, b = fast.attribute(enc), plain.attribute(enc)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert float(a.abs().max()) > 1e-3
    assert all("forward" not in m.__dict__ for m in model.modules())


class _MeanPoolingBert(BertForSequenceClassification):
    """A BERT whose head reads the mean of every real position (not the [CLS] pooler the table expects)."""

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        m = attention_mask[..., None].to(hidden.dtype)
        return self.classifier((hidden * m).sum(1) / m.sum(1))


def _state(model, enc):
    batch = prepare_batch(model, enc)
    with torch.inference_mode(), ReadoutForwards(model) as forwards:
        out = forwards(batch)
        torch.testing.assert_close(out, call_model(model, batch), atol=1e-6, rtol=0)
        return forwards.active, forwards.reason


def test_a_head_reading_other_positions_falls_back():
    base = tiny_model("bert", seed=2)
    model = _MeanPoolingBert(base.config).eval()
    model.load_state_dict(base.state_dict())
    enc = tiny_batch("bert", model, batch_size=3, seq_len=9)
    active, reason = _state(model, enc)
    assert not active and "head reads positions other than" in reason
    torch.testing.assert_close(LeaveOneOut(model).attribute(enc), LeaveOneOut(model, batched=False).attribute(enc),
                               atol=1e-6, rtol=0)


def test_a_wrong_table_entry_falls_back(monkeypatch):
    """A family whose finish forgets the feed-forward: the equality check of the first call refuses it."""
    model = tiny_model("bert", seed=2)
    enc = tiny_batch("bert", model, batch_size=3, seq_len=9)
    good = FAMILIES["bert"]
    wrong = Family("bert-without-ffn", good.attention, good.values,
                   lambda block, ctx, h: block.attention.output(ctx, h), good.rows, good.head, good.needs,
                   good.context)
    monkeypatch.setitem(FAMILIES, "bert", wrong)
    active, reason = _state(model, enc)
    assert not active and "does not reproduce the full forward" in reason
    # a context module the block never calls
    monkeypatch.setitem(FAMILIES, "bert", Family("bert-wrong-context", good.attention, good.values, good.finish,
                                                 good.rows, good.head, good.needs, "attention.self.dropout"))
    active, reason = _state(model, enc)
    assert not active and "readout forward failed" in reason


def test_a_user_forward_and_autocast_use_complete_forwards():
    model = tiny_model("bert", seed=1)
    enc = tiny_batch("bert", model)
    forward = lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits * 2.0  # noqa: E731
    batch = prepare_batch(model, enc, forward=UserForward(forward, model))
    with torch.inference_mode(), ReadoutForwards(model) as forwards:
        torch.testing.assert_close(forwards(batch), call_model(model, batch))
        assert not forwards.checked
        plain = prepare_batch(model, enc)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            forwards(plain)
        assert not forwards.checked


def test_nested_use_and_other_threads_run_the_whole_block():
    model = tiny_model("bert", seed=1)
    enc = tiny_batch("bert", model, batch_size=3, seq_len=9)
    batch = prepare_batch(model, enc)
    ffn = model.bert.encoder.layer[-1].intermediate
    rows = []
    handle = ffn.register_forward_hook(lambda m, a, o: rows.append((threading.get_ident(), a[0].shape[1])))
    try:
        with torch.inference_mode(), ReadoutForwards(model) as outer:
            outer.check(batch)
            with ReadoutForwards(model) as inner:  # nested in the same thread: inactive, complete forwards
                assert not inner.applicable and "another ReadoutForwards" in inner.reason
            rows.clear()
            other = threading.Thread(target=lambda: call_model(model, batch))
            other.start()
            other.join()
            outer(batch)
    finally:
        handle.remove()
    me = threading.get_ident()
    assert [r for t, r in rows if t != me] == [9]
    assert [r for t, r in rows if t == me] == [1]
    assert all("forward" not in m.__dict__ for m in model.modules())
