"""ErasureFlip (Serrano & Smith 2019, section 5): the batched engine against plain per-step loops written here."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from attnfaith import AttentionTap, ErasureFlip
from attnfaith.attr import AttentionAttribution
from attnfaith.evaluators import ErasureComparison, ErasureResult
from attnfaith.plain_loops import plain_erasure_flip
from attnfaith.testing import DECODER_ARCHITECTURES, MASK_ID, special_token_ids, tiny_batch, tiny_model

ARCHS = ["bert", "gpt2", "llama", "deberta-v2"]
# (seed, std) of tiny_model per architecture, chosen so that every level below flips some decisions and not others
MODEL_ARGS = {"bert": (3, 0.4), "gpt2": (5, 0.2), "llama": (2, 0.2), "deberta-v2": (2, 0.4)}
LEVELS = [("attention", "delete"), ("token", "delete"), ("token", "mask")]

_MODELS: dict = {}



def _model(arch):
    if arch not in _MODELS:
        seed, std = MODEL_ARGS[arch]
        model = tiny_model(arch, seed=seed, std=std)
        enc = tiny_batch(arch, model, batch_size=4, seq_len=9, lengths=[9, 6, 4, 7], seed=3)
        _MODELS[arch] = (model, enc)
    return _MODELS[arch]


def _tied_scores(enc, seed=0):
    """Integer-valued scores with many ties (exercises the 'lower position first' rule)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 3, enc["input_ids"].shape, generator=g).float()


# ------------------------------------------------------------------------------------------------ the reference


@torch.no_grad()
def reference_erasure(model, enc, scores, level, erase, layer, replace_id=MASK_ID):
    """One forward per example and per removal, built by hand (no attnfaith batching, packing or perturb code).

    Each row runs alone and without its padding, so the reference also says what a row's numbers must be whatever
    its batch-mates (for left-padded absolute-position decoders such as GPT-2, attnfaith derives position ids from
    the mask to match this). Returns (n_removed list with None for never, curve [B, T+1] with NaN past the items).
    """
    ids, am = enc["input_ids"], enc["attention_mask"]
    B, T = ids.shape
    specials = special_token_ids(model)
    n_removed = []
    curve = torch.full((B, T + 1), float("nan"))

    def probs(row_ids, removed_keys=None):
        kwargs = {"input_ids": row_ids, "attention_mask": torch.ones_like(row_ids)}
        if removed_keys is None:
            return torch.softmax(model(**kwargs).logits[0], -1)
        erase_mask = torch.zeros(row_ids.shape, dtype=torch.bool)
        erase_mask[0, removed_keys] = True
        with AttentionTap(model, capture=None) as tap:
            tap.intervene("zero", erase_mask, layers=[layer])
            return torch.softmax(model(**kwargs).logits[0], -1)

    for b in range(B):
        real = [t for t in range(T) if am[b, t] == 1]
        col = {t: i for i, t in enumerate(real)}  # position in the batch -> position in the unpadded row
        items = [t for t in real if int(ids[b, t]) not in specials]
        order = sorted(items, key=lambda t: (-float(scores[b, t]), t))
        row = ids[b, real][None]
        p0 = probs(row)
        c = int(p0.argmax())
        curve[b, 0] = p0[c]
        first = None
        for k in range(1, len(order) + 1):
            removed = set(order[:k])
            if level == "attention":
                p = probs(row, sorted(col[t] for t in removed))
            elif erase == "delete":
                p = probs(torch.tensor([[int(ids[b, t]) for t in real if t not in removed]]))
            else:
                new = row.clone()
                new[0, sorted(col[t] for t in removed)] = replace_id
                p = probs(new)
            curve[b, k] = p[c]
            if first is None and int(p.argmax()) != c:
                first = k
        n_removed.append(first)
    return n_removed, curve


def _check_against(res: ErasureResult, n_ref, curve_ref):
    got = [None if math.isnan(v) else int(v) for v in res.n_removed.tolist()]
    assert got == n_ref
    assert res.flipped.tolist() == [v is not None for v in n_ref]
    assert torch.equal(torch.isnan(res.curve), torch.isnan(curve_ref))
    assert torch.allclose(res.curve.nan_to_num(-1.0), curve_ref.nan_to_num(-1.0), atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("level,erase", LEVELS)
def test_matches_plain_loop(arch, level, erase):
    model, enc = _model(arch)
    scores = _tied_scores(enc)
    n_ref, curve_ref = reference_erasure(model, enc, scores, level, erase, layer=1)
    assert any(v is not None for v in n_ref), "the comparison needs some decision flips"
    ef = ErasureFlip(model, level=level, layer=-1, erase=erase)
    for chunk in (1, 7, 64):
        _check_against(ef.evaluate(enc, scores, max_examples_per_batch=chunk), n_ref, curve_ref)
    _check_against(plain_erasure_flip(ef, enc, scores), n_ref, curve_ref)
    res = ef.evaluate(enc, scores, max_examples_per_batch=7)
    n_items = res.n_items.double()
    frac = res.n_removed.double() / n_items
    assert torch.allclose(res.fraction_removed.double().nan_to_num(-1), frac.nan_to_num(-1))
    # AOPC (Samek et al.): mean over k = 0..n of p_0 - p_k
    for b in range(len(res)):
        n = int(res.n_items[b])
        expect = float((curve_ref[b, 0] - curve_ref[b, : n + 1]).sum() / (n + 1))
        assert res.aopc[b].item() == pytest.approx(expect, abs=1e-5)


def test_erase_with_an_int_id():
    model, enc = _model("bert")
    scores = _tied_scores(enc, seed=9)
    n_ref, curve_ref = reference_erasure(model, enc, scores, "token", "mask", layer=1, replace_id=42)
    _check_against(ErasureFlip(model, level="token", erase=42).evaluate(enc, scores, max_examples_per_batch=5),
                   n_ref, curve_ref)


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_attention_ranking_name(arch):
    """attributions="attention" ranks by the layer's attention (query row of the classified token)."""
    model, enc = _model(arch)
    query = "last" if arch in DECODER_ARCHITECTURES else "cls"
    scores = AttentionAttribution(model, layer=-1, query=query).attribute(enc)
    n_ref, curve_ref = reference_erasure(model, enc, scores, "attention", "delete", layer=1)
    res = ErasureFlip(model).evaluate(enc, "attention")
    _check_against(res, n_ref, curve_ref)
    assert torch.allclose(res.scores, scores)


def test_layer_list_and_heads():
    model, enc = _model("bert")
    scores = _tied_scores(enc, seed=4)
    a = ErasureFlip(model, layer=[0, 1], heads=[0, 2]).evaluate(enc, scores)
    # reference: zero both layers, two heads, with the tap directly, one example at a time
    ids, am = enc["input_ids"], enc["attention_mask"]
    specials = special_token_ids(model)
    with torch.no_grad():
        for b in range(ids.shape[0]):
            items = [t for t in range(ids.shape[1]) if am[b, t] and int(ids[b, t]) not in specials]
            order = sorted(items, key=lambda t: (-float(scores[b, t]), t))
            p0 = torch.softmax(model(input_ids=ids[b : b + 1], attention_mask=am[b : b + 1]).logits[0], -1)
            c = int(p0.argmax())
            for k in range(1, len(order) + 1):
                erase = torch.zeros(1, ids.shape[1], dtype=torch.bool)
                erase[0, order[:k]] = True
                with AttentionTap(model, capture=None) as tap:
                    tap.intervene("zero", erase, layers=[0, 1], heads=[0, 2])
                    p = torch.softmax(model(input_ids=ids[b : b + 1], attention_mask=am[b : b + 1]).logits[0], -1)
                assert a.curve[b, k].item() == pytest.approx(p[c].item(), abs=1e-5)
    all_layers = ErasureFlip(model, layer="all").evaluate(enc, scores)
    assert torch.allclose(all_layers.curve.nan_to_num(-1), ErasureFlip(model, layer=[0, 1]).evaluate(enc, scores)
                          .curve.nan_to_num(-1), atol=1e-6)


# ------------------------------------------------------------------------------------------------ random ranking


def test_random_ranking_averages_orders():
    model, enc = _model("llama")
    ef = ErasureFlip(model, level="token", erase="mask", n_random=5, seed=7)
    res = ef.evaluate(enc, "random", max_examples_per_batch=5)
    assert res.n_orders == 5 and res.scores is None and len(res.order_scores) == 5
    per = [ef.evaluate(enc, s) for s in res.order_scores]  # each order as a fixed ranking
    nr = torch.stack([r.n_removed for r in per], 1)
    assert torch.equal(torch.isnan(nr), torch.isnan(res.n_removed_per_order))
    assert torch.equal(nr.nan_to_num(-1), res.n_removed_per_order.nan_to_num(-1))
    for b in range(len(res)):
        vals = [v for v in nr[b].tolist() if not math.isnan(v)]
        if vals:
            assert res.n_removed[b].item() == pytest.approx(sum(vals) / len(vals))
            assert res.fraction_removed[b].item() == pytest.approx(sum(vals) / len(vals) / int(res.n_items[b]))
        else:
            assert math.isnan(res.n_removed[b].item()) and math.isnan(res.fraction_removed[b].item())
        assert bool(res.flipped[b]) == bool(vals)
    curves = torch.stack([r.curve for r in per])
    assert torch.allclose(res.curve.nan_to_num(-1), curves.mean(0).nan_to_num(-1), atol=1e-6)
    assert torch.allclose(res.aopc, torch.stack([r.aopc for r in per]).mean(0), atol=1e-6)
    # the summary pools (example, order) pairs
    s = res.summary()
    fr = nr / res.n_items[:, None]
    ok = ~torch.isnan(fr)
    assert s["mean_fraction_removed"] == pytest.approx(fr[ok].double().mean().item())
    assert s["never_flipped"] == pytest.approx((~ok).double().mean().item())
    # seeded: the same orders again, whatever the chunking
    again = ef.evaluate(enc, "random", max_examples_per_batch=64)
    assert all(torch.equal(x, y) for x, y in zip(res.order_scores, again.order_scores))
    assert torch.equal(res.n_removed_per_order.nan_to_num(-1), again.n_removed_per_order.nan_to_num(-1))


# ------------------------------------------------------------------------------------------------ planted signal


SIGNAL = 4


def _planted_data(n, seed):
    """Rows of 10 words from 5..19, no padding; label 1 iff the signal token 4 occurs (once or twice)."""
    g = torch.Generator().manual_seed(seed)
    T = 10
    ids = torch.randint(5, 20, (n, T), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    for i in range(n):
        if labels[i]:
            k = int(torch.randint(1, 3, (1,), generator=g))
            pos = torch.randperm(T, generator=g)[:k]
            ids[i, pos] = SIGNAL
    return ids, torch.ones_like(ids), labels


@pytest.fixture(scope="module")
def planted_model():
    from attnfaith.reference.models import AverageAttentionClassifier

    torch.manual_seed(0)
    model = AverageAttentionClassifier(vocab_size=20, num_labels=2, embed_dim=16, hidden_dim=16, special_token_ids=(0,))
    ids, mask, y = _planted_data(512, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for step in range(150):
        idx = torch.randint(0, 512, (64,), generator=torch.Generator().manual_seed(step))
        loss = nn.functional.cross_entropy(model(ids[idx], mask[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model


def test_planted_signal_loo_beats_random(planted_model):
    from attnfaith.attr.loo import LeaveOneOut

    model = planted_model
    ids, mask, y = _planted_data(64, seed=1)
    with torch.no_grad():
        assert (model(ids, mask).argmax(-1) == y).double().mean() > 0.95
    pos = y == 1
    ids, mask = ids[pos], mask[pos]
    ef = ErasureFlip(model, level="token", erase="delete")
    table = ef.compare(ids, {"loo": LeaveOneOut(model), "random": "random"}, additional_forward_args=(mask,))
    loo, rnd = table["loo"].summary(), table["random"].summary()
    assert loo["mean_fraction_removed"] < rnd["mean_fraction_removed"]
    assert loo["mean_n_removed"] < rnd["mean_n_removed"]
    assert loo["mean_n_removed"] <= 2.0  # the signal tokens go first
    # the custom model's additive attention (AttentionSoftmax route), erased at the attention level
    att = ErasureFlip(model).compare(ids, ["attention", "random"], additional_forward_args=(mask,))
    assert att["attention"].summary()["mean_fraction_removed"] < att["random"].summary()["mean_fraction_removed"]


# ------------------------------------------------------------------------------------------------ results, compare


def test_compare_table_and_serialisation():
    model, enc = _model("gpt2")
    scores = _tied_scores(enc, seed=2)
    ef = ErasureFlip(model, level="token", erase="mask")
    cmp = ef.compare(enc, {"mine": scores, "attention": "attention", "random": "random"}, max_examples_per_batch=8)
    assert isinstance(cmp, ErasureComparison)
    assert list(cmp.table) == ["mine", "attention", "random"]
    single = ef.evaluate(enc, scores)
    assert torch.equal(cmp["mine"].n_removed.nan_to_num(-1), single.n_removed.nan_to_num(-1))
    md = cmp.to_markdown()
    assert "| mine |" in md and "| random |" in md and str(cmp) == md
    json.dumps(cmp.to_dict(), allow_nan=False)
    json.dumps(single.to_dict(), allow_nan=False)
    assert "ranking" in str(single)
    s = single.summary()
    assert set(s) >= {"mean_fraction_removed", "never_flipped", "mean_aopc", "n_examples"}


def test_compare_list_of_names_and_gradients():
    model, enc = _model("bert")
    cmp = ErasureFlip(model).compare(enc, ["gradient", "attention_x_gradient"])
    assert set(cmp.results) == {"gradient", "attention_x_gradient"}
    for r in cmp.results.values():
        assert r.scores.shape == enc["input_ids"].shape


def test_model_left_as_found():
    model, enc = _model("bert")
    hooks = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]
    model.train()
    impl = model.config._attn_implementation
    try:
        ErasureFlip(model).evaluate(enc, "attention")
        ErasureFlip(model, level="token").evaluate(enc, "gradient")
        assert model.training and all(m.training for m in model.modules())
        assert model.config._attn_implementation == impl
        assert hooks == [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]
    finally:
        model.eval()


# ------------------------------------------------------------------------------------------------ steps=

ERASER = (0.01, 0.05, 0.1, 0.2, 0.5)


def _eraser_counts(n):
    """By hand: ERASER's fractions of n items, at least one item, rounded up (0.2 of 5 items: 1, 0.5 of 5: 3)."""
    return {1: [1, 1, 1, 1, 1], 2: [1, 1, 1, 1, 1], 3: [1, 1, 1, 1, 2], 4: [1, 1, 1, 1, 2], 5: [1, 1, 1, 1, 3],
            6: [1, 1, 1, 2, 3], 7: [1, 1, 1, 2, 4], 8: [1, 1, 1, 2, 4], 10: [1, 1, 1, 2, 5]}[n]


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
@pytest.mark.parametrize("level,erase", LEVELS)
def test_steps_match_plain_loop_and_full_curve(arch, level, erase):
    model, enc = _model(arch)
    scores = _tied_scores(enc)
    _, curve_ref = reference_erasure(model, enc, scores, level, erase, layer=1)  # every k, built by hand
    ef = ErasureFlip(model, level=level, layer=-1, erase=erase, steps=ERASER)
    plain = plain_erasure_flip(ef, enc, scores)
    full = ErasureFlip(model, level=level, layer=-1, erase=erase).evaluate(enc, scores)
    for chunk in (1, 5, 64):
        res = ef.evaluate(enc, scores, max_examples_per_batch=chunk)
        assert res.steps == ERASER
        assert torch.equal(res.n_removed.nan_to_num(-1), plain.n_removed.nan_to_num(-1))
        assert torch.equal(res.flipped, plain.flipped)
        torch.testing.assert_close(res.curve, plain.curve, atol=1e-5, rtol=0, equal_nan=True)
        torch.testing.assert_close(res.aopc, plain.aopc, atol=1e-5, rtol=0, equal_nan=True)
        early = ef.evaluate(enc, scores, max_examples_per_batch=chunk, full_curve=False)
        assert torch.equal(early.n_removed.nan_to_num(-1), res.n_removed.nan_to_num(-1))
    for b in range(len(res)):
        n = int(res.n_items[b])
        ks = _eraser_counts(n)
        points = sorted(set(ks))
        # the curve holds exactly the steps' points, with the per-item curve's values
        assert (~torch.isnan(res.curve[b])).nonzero().flatten().tolist() == [0, *points]
        torch.testing.assert_close(res.curve[b, points], curve_ref[b, points], atol=1e-5, rtol=0)
        # ERASER's AOPC: 1/(S+1) sum over the steps of p_0 - p_k (each step once, k = 0 adds nothing)
        expect = float(sum(curve_ref[b, 0] - curve_ref[b, k] for k in ks) / (len(ks) + 1))
        assert res.aopc[b].item() == pytest.approx(expect, abs=1e-5)
        # the first step that flipped: never before the per-item first flip, never if the full curve never flips
        if bool(full.flipped[b]):
            assert not bool(res.flipped[b]) or res.n_removed[b] >= full.n_removed[b]
            if int(full.n_removed[b]) in points:
                assert res.n_removed[b] == full.n_removed[b]
        else:
            assert not bool(res.flipped[b])
        if bool(res.flipped[b]):
            assert int(res.n_removed[b]) in points
            assert res.fraction_removed[b].item() == pytest.approx(res.n_removed[b].item() / n)


def test_steps_bad_values():
    model, _ = _model("bert")
    for bad in ([], [0.0], [1.5], ["a"], 0.1, [True]):
        with pytest.raises((ValueError, TypeError), match="steps"):
            ErasureFlip(model, steps=bad)
    assert ErasureFlip(model, steps=[0.5, 0.1, 0.5]).steps == (0.1, 0.5)


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_arguments():
    model, enc = _model("bert")
    with pytest.raises(ValueError, match="level"):
        ErasureFlip(model, level="tokens")
    with pytest.raises(ValueError, match="erase"):
        ErasureFlip(model, level="token", erase="zero")
    with pytest.raises(ValueError, match="erase"):
        ErasureFlip(model, level="token", erase=10_000)
    with pytest.raises(ValueError, match="layer"):
        ErasureFlip(model, layer=5).evaluate(enc, "attention")
    with pytest.raises(ValueError, match="layer"):
        ErasureFlip(model, layer=-3).evaluate(enc, _tied_scores(enc))
    with pytest.raises(ValueError, match="layer"):
        ErasureFlip(model, level="token", layer=[0, 2]).evaluate(enc, _tied_scores(enc))
    with pytest.raises(ValueError, match="layer"):
        ErasureFlip(model, layer="last")
    with pytest.raises(ValueError, match="heads"):
        ErasureFlip(model, heads=[7]).evaluate(enc, _tied_scores(enc))
    with pytest.raises(ValueError, match="attributions"):
        ErasureFlip(model).evaluate(enc, torch.zeros(4, 3))
    bad = _tied_scores(enc)
    bad[0, 1] = float("nan")
    with pytest.raises(ValueError, match="attributions"):
        ErasureFlip(model).evaluate(enc, bad)
    with pytest.raises(ValueError, match="attributions"):
        ErasureFlip(model).evaluate(enc, "saliency")
    with pytest.raises(ValueError, match="n_random"):
        ErasureFlip(model, n_random=0)
    no_items = torch.ones_like(enc["input_ids"], dtype=torch.bool)
    no_items[2] = False
    with pytest.raises(ValueError, match="inputs"):
        ErasureFlip(model).evaluate(enc, _tied_scores(enc), mask=no_items)


@pytest.mark.parametrize("level,erase", LEVELS)
def test_single_item_example(level, erase):
    model, enc = _model("gpt2")
    one = torch.zeros_like(enc["input_ids"], dtype=torch.bool)
    one[:, -1] = True  # gpt2 rows are left padded: the last token is always a real word
    one[1, -3:] = True
    res = ErasureFlip(model, level=level, erase=erase).evaluate(enc, _tied_scores(enc), mask=one)
    assert res.n_items.tolist() == [1, 3, 1, 1]
    for b in (0, 2, 3):
        assert math.isnan(res.n_removed[b].item()) or res.n_removed[b].item() == 1.0
        assert not torch.isnan(res.curve[b, :2]).any() and torch.isnan(res.curve[b, 2:]).all()


# ------------------------------------------------------------------------------------------------ Captum


def test_captum_workflow_example():
    """examples/captum_workflow.py runs, and the scores the results hold are Captum's own, summed over the hidden
    axis, for the predicted class."""
    import importlib.util
    from pathlib import Path

    from captum.attr import LayerIntegratedGradients, Saliency, visualization

    path = Path(__file__).resolve().parents[2] / "examples" / "captum_workflow.py"
    spec = importlib.util.spec_from_file_location("captum_workflow", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table, records, html = module.main(verbose=False)
    assert set(table.results) == {"attention", "lig", "ig", "saliency", "random"}
    assert all(isinstance(r, visualization.VisualizationDataRecord) for r in records) and "<mark" in html

    model = tiny_model("bert", seed=3, std=0.4)
    enc = tiny_batch("bert", model, batch_size=6, seq_len=12, seed=1)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.no_grad():
        pred = model(**enc).logits.argmax(-1)
    assert torch.equal(table["lig"].prediction, pred)
    lig = LayerIntegratedGradients(lambda i, m: model(input_ids=i, attention_mask=m).logits,
                                   model.get_input_embeddings())
    expect = lig.attribute(ids, target=pred, additional_forward_args=(mask,)).sum(-1)
    assert torch.allclose(table["lig"].scores, expect, atol=1e-5)
    sal = Saliency(lambda e, m: model(inputs_embeds=e, attention_mask=m).logits)
    emb = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    expect = sal.attribute(emb, target=pred, additional_forward_args=(mask,)).sum(-1)
    assert torch.allclose(table["saliency"].scores, expect, atol=1e-6)
