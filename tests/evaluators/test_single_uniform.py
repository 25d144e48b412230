"""SingleWeightErasure (Serrano & Smith 2019, §4) and UniformAttention (Wiegreffe & Pinter 2019) against hand
computations."""

from __future__ import annotations

import json
import math

import pytest
import torch
from scipy.spatial.distance import jensenshannon
from torch import nn

from attnfaith import AttentionTap, SingleWeightErasure, UniformAttention
from attnfaith.reference.models import AverageAttentionClassifier
from attnfaith.testing import special_token_ids, tiny_batch, tiny_model



@pytest.fixture(scope="module")
def bert():
    model = tiny_model("bert", seed=3, std=0.4)
    enc = tiny_batch("bert", model, batch_size=6, seq_len=9, lengths=[9, 6, 4, 7, 3, 8], seed=5)
    return model, enc


def _js(p: torch.Tensor, q: torch.Tensor) -> float:
    """JS divergence in nats (scipy's distance is its square root; natural log by default)."""
    return float(jensenshannon(p.double().numpy(), q.double().numpy())) ** 2


# ------------------------------------------------------------------------------------------------ single weight


@torch.no_grad()
def test_single_weight_matches_hand_computation(bert):
    model, enc = bert
    ids, am = enc["input_ids"], enc["attention_mask"]
    B, T = ids.shape
    res = SingleWeightErasure(model, seed=11).evaluate(enc)
    specials = special_token_ids(model)
    with AttentionTap(model) as tap:
        model(**enc)
        att = tap.attentions[-1]  # [B, H, T, T]
    table = torch.zeros(2, 2, dtype=torch.long)
    for b in range(B):
        items = [t for t in range(T) if am[b, t] and int(ids[b, t]) not in specials]
        a = att[b, :, 0, :].mean(0)  # the [CLS] row, mean over heads
        top = max(items, key=lambda t: (float(a[t]), -t))
        assert int(res.top_index[b]) == top
        row = {k: v[b : b + 1] for k, v in enc.items()}
        p = torch.softmax(model(**row).logits[0], -1)

        def erased(pos):
            erase = torch.zeros(1, T, dtype=torch.bool)
            erase[0, pos] = True
            with AttentionTap(model, capture=None) as t2:
                t2.intervene("zero", erase, layers=[-1])
                return torch.softmax(model(**row).logits[0], -1)

        q = erased(top)
        assert res.js_top[b].item() == pytest.approx(_js(p, q), abs=1e-6)
        assert bool(res.flip_top[b]) == (int(q.argmax()) != int(p.argmax()))
        r = int(res.random_index[b])
        if len(items) == 1:
            assert r == -1 and not bool(res.has_random[b])
            assert math.isnan(res.js_random[b].item()) and not bool(res.flip_random[b])
            continue
        assert r in items and r != top
        qr = erased(r)
        assert res.js_random[b].item() == pytest.approx(_js(p, qr), abs=1e-6)
        assert res.delta_js[b].item() == pytest.approx(_js(p, q) - _js(p, qr), abs=1e-6)
        fr = int(qr.argmax()) != int(p.argmax())
        assert bool(res.flip_random[b]) == fr
        table[0 if bool(res.flip_top[b]) else 1, 0 if fr else 1] += 1
    assert torch.equal(res.flip_table.cpu(), table)
    s = res.summary()
    assert s["n_compared"] == int(table.sum()) == B - 1
    assert s["both_flip"] + s["only_top_flips"] + s["only_random_flips"] + s["neither_flips"] == B - 1
    json.dumps(res.to_dict(), allow_nan=False)
    assert "SingleWeightErasure" in str(res)


@torch.no_grad()
def plain_single_weight(model, enc, top_index, random_index, layer=-1):
    """The reference: one complete forward per example and per variant, alone (its items: ``top_index`` and
    ``random_index``, −1 for none), the weight zeroed with the tap in the last layer. Returns ``(js_top,
    js_random, flip_top, flip_random)`` (NaN / False without a random item)."""
    B, T = enc["input_ids"].shape
    js_top, js_random = torch.full((B,), float("nan")), torch.full((B,), float("nan"))
    flip_top, flip_random = torch.zeros(B, dtype=torch.bool), torch.zeros(B, dtype=torch.bool)
    with AttentionTap(model, capture=None) as tap:
        for b in range(B):
            row = {k: v[b : b + 1] for k, v in enc.items()}
            p = torch.softmax(model(**row).logits[0], -1)
            variants = ((int(top_index[b]), js_top, flip_top), (int(random_index[b]), js_random, flip_random))
            for pos, js, flip in variants:
                if pos < 0:
                    continue
                erase = torch.zeros(1, T, dtype=torch.bool)
                erase[0, pos] = True
                iv = tap.intervene("zero", erase, layers=[layer % len(tap.layers)])
                try:
                    q = torch.softmax(model(**row).logits[0], -1)
                finally:
                    tap.remove(iv)
                js[b] = _js(p, q)
                flip[b] = int(q.argmax()) != int(p.argmax())
    return js_top, js_random, flip_top, flip_random


def test_single_weight_batched_equals_plain(bert):
    model, enc = bert
    ev = SingleWeightErasure(model, seed=2)
    first = ev.evaluate(enc, max_examples_per_batch=64)
    js_top, js_random, flip_top, flip_random = plain_single_weight(model, enc, first.top_index, first.random_index)
    for chunk in (1, 7, 64):
        got = ev.evaluate(enc, max_examples_per_batch=chunk)
        assert torch.equal(got.top_index, first.top_index) and torch.equal(got.random_index, first.random_index)
        assert torch.equal(got.flip_top, flip_top) and torch.equal(got.flip_random, flip_random)
        assert torch.allclose(got.js_top.double(), js_top.double(), atol=1e-6)
        assert torch.allclose(got.js_random.double().nan_to_num(-1), js_random.double().nan_to_num(-1), atol=1e-6)


def test_random_item_never_the_top_one(bert):
    model, enc = bert
    ev = SingleWeightErasure(model)
    g = torch.Generator().manual_seed(0)
    for trial in range(300):
        B, T = 4, int(torch.randint(1, 8, (1,), generator=g))
        items = torch.rand(B, T, generator=g) < 0.6
        items[:, 0] |= ~items.any(-1)  # at least one item per row
        scores = torch.rand(B, T, generator=g)
        top = torch.where(items, scores, torch.full_like(scores, -1)).argmax(-1)
        ev.seed = trial
        idx, has = ev.random_items(items, top)
        n = items.sum(-1)
        assert torch.equal(has, n >= 2)
        for b in range(B):
            if n[b] >= 2:
                assert items[b, idx[b]] and idx[b] != top[b]
            else:
                assert idx[b] == -1
    # and through evaluate, with the top item at position 1 (Serrano & Smith's draw could return it)
    ids, am = enc["input_ids"], enc["attention_mask"]
    scores = torch.zeros(ids.shape)
    scores[:, 1] = 1.0
    for seed in range(12):
        res = SingleWeightErasure(model, seed=seed).evaluate(enc, scores)
        assert (res.top_index == 1).all()
        assert not (res.random_index == res.top_index).any()


def test_single_weight_errors(bert):
    model, enc = bert
    with pytest.raises(ValueError, match="layer"):
        SingleWeightErasure(model, layer=4).evaluate(enc)
    with pytest.raises(ValueError, match="attributions"):
        SingleWeightErasure(model).evaluate(enc, torch.zeros(2, 2))
    none = torch.ones_like(enc["input_ids"], dtype=torch.bool)
    none[0] = False
    with pytest.raises(ValueError, match="inputs"):
        SingleWeightErasure(model).evaluate(enc, mask=none)


# ------------------------------------------------------------------------------------------------ uniform


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 20, (n, 8), generator=g)
    ids[: n // 2, 3] = 4  # the signal token
    y = (ids == 4).any(-1).long()
    ids[:, 0] = 2  # a special token (<sos> of the reference vocabulary): never attended
    mask = torch.ones_like(ids)
    mask[n // 3 :, 6:] = 0  # right padding
    ids[mask == 0] = 0
    return ids, mask, y


def _train(model, steps=60):
    ids, mask, y = _data(256, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for step in range(steps):
        idx = torch.randint(0, 256, (32,), generator=torch.Generator().manual_seed(step))
        loss = nn.functional.cross_entropy(model(ids[idx], mask[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_uniform_on_frozen_uniform_model_changes_nothing():
    torch.manual_seed(0)
    model = _train(AverageAttentionClassifier(20, num_labels=2, embed_dim=8, hidden_dim=8, uniform_attention=True))
    ids, mask, y = _data(30, seed=1)
    res = UniformAttention(model).evaluate(ids, labels=y, additional_forward_args=(mask,))
    assert res.tvd.max().item() < 1e-6
    assert res.jsd.max().item() < 1e-9
    assert not res.flipped.any()
    assert res.accuracy == res.accuracy_uniform
    with torch.no_grad():
        assert res.accuracy == pytest.approx((model(ids, mask).argmax(-1) == y).double().mean().item())


def test_uniform_matches_imposed_uniform_attention():
    """A trained attention model: UniformAttention's output equals the model run with uniform attention imposed
    through its own ``attention_weights`` argument (uniform over the real, non-special tokens)."""
    torch.manual_seed(1)
    model = _train(AverageAttentionClassifier(20, num_labels=2, embed_dim=8, hidden_dim=8))
    ids, mask, y = _data(30, seed=2)
    allowed = model.attention_mask_for(ids, mask).float()
    uniform = allowed / allowed.sum(-1, keepdim=True)
    with torch.no_grad():
        expect = torch.softmax(model(ids, mask, attention_weights=uniform), -1)
        before = torch.softmax(model(ids, mask), -1)
    for chunk in (1, 7, 64):
        res = UniformAttention(model).evaluate(ids, labels=y, additional_forward_args=(mask,),
                                               max_examples_per_batch=chunk)
        assert torch.allclose(res.probs_uniform, expect, atol=1e-6)
        assert torch.allclose(res.probs, before, atol=1e-6)
        assert torch.allclose(res.tvd, 0.5 * (expect - before).abs().sum(-1), atol=1e-6)
        assert torch.equal(res.flipped, expect.argmax(-1) != before.argmax(-1))
    assert res.tvd.max() > 1e-3  # the trained attention is not uniform
    assert res.accuracy_uniform == pytest.approx((expect.argmax(-1) == y).double().mean().item())
    for b in range(len(res)):
        assert res.jsd[b].item() == pytest.approx(_js(before[b], expect[b]), abs=1e-6)


@torch.no_grad()
def test_uniform_on_bert_matches_per_example_tap(bert):
    model, enc = bert
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    res = UniformAttention(model, layers=[0, -1]).evaluate(enc, labels=labels, max_examples_per_batch=4)
    # the reference: one complete forward per example, alone, every layer made uniform by the tap
    for b in range(enc["input_ids"].shape[0]):
        row = {k: v[b : b + 1] for k, v in enc.items()}
        with AttentionTap(model, capture=None) as tap:
            tap.intervene("uniform", layers=None)
            q = torch.softmax(model(**row).logits[0], -1)
        assert torch.allclose(res.probs_uniform[b], q, atol=1e-6)
    assert res.accuracy == pytest.approx((res.prediction == labels).double().mean().item())
    s = res.summary()
    assert s["layers"] == [0, 1] and s["n_examples"] == 6
    json.dumps(res.to_dict(), allow_nan=False)
    assert "UniformAttention" in str(res)


def test_uniform_errors(bert):
    model, enc = bert
    with pytest.raises(ValueError, match="layers"):
        UniformAttention(model, layers=[0, 2]).evaluate(enc)
    with pytest.raises(ValueError, match="labels"):
        UniformAttention(model).evaluate(enc, labels=[0, 1])
    with pytest.raises(ValueError, match="layers"):
        UniformAttention(model, layers="some")
