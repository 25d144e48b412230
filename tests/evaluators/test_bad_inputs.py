"""Inputs that used to give silent or cryptic results in the Python API: now a number that means something, or a
clear error naming the argument."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from attnfaith import ErasureFlip, KendallTau, LeaveOneOut, PermutationTVD, UniformAttention
from attnfaith.attr import AttentionGradient
from attnfaith.testing import tiny_batch, tiny_model


@pytest.fixture(scope="module")
def bert():
    model = tiny_model("bert", num_labels=2, seed=2).eval()
    return model, tiny_batch("bert", model, batch_size=3, seq_len=8, lengths=[8, 6, 7])


def _with_padding_row(enc, row=1):
    out = {k: v.clone() for k, v in enc.items()}
    out["attention_mask"][row] = 0
    return out


def _without_row(enc, row=1):
    keep = [b for b in range(enc["input_ids"].shape[0]) if b != row]
    return {k: v[keep] for k, v in enc.items()}


def test_permutation_tvd_of_a_row_without_items_is_nan(bert):
    model, enc = bert
    evaluator = PermutationTVD(model, n_permutations=4, seed=1)
    res = evaluator.evaluate(_with_padding_row(enc))
    assert torch.isnan(res.tvd[1]).all() and math.isnan(float(res.median[1])) and math.isnan(float(res.max[1]))
    assert math.isnan(float(res.max_attention[1]))
    assert torch.isfinite(res.tvd[[0, 2]]).all() and (res.tvd[[0, 2]] > 1e-4).any()
    assert res.summary()["all"]["n"] == 2


def test_uniform_tvd_of_a_row_without_items_is_nan(bert):
    model, enc = bert
    res = UniformAttention(model).evaluate(_with_padding_row(enc))
    assert math.isnan(float(res.tvd[1])) and math.isnan(float(res.jsd[1])) and not bool(res.flipped[1])
    alone = UniformAttention(model).evaluate(_without_row(enc))
    torch.testing.assert_close(res.tvd[[0, 2]], alone.tvd, rtol=1e-5, atol=1e-7)
    s = res.summary()
    assert s["mean_tvd"] == pytest.approx(float(alone.tvd.double().mean()), rel=1e-5)
    assert s["flip_rate"] == pytest.approx(float(alone.flipped.double().mean()))


@pytest.mark.parametrize("target", ["1", 1.0, b"1", object()])
def test_target_of_the_wrong_type_is_named(bert, target):
    model, enc = bert
    with pytest.raises(TypeError, match="target must be None"):
        ErasureFlip(model).evaluate(dict(enc), "random", target=target)
    with pytest.raises(TypeError, match="target must be None"):
        KendallTau(model, reference="gradient").evaluate(dict(enc), target=target)


def test_kendall_tau_takes_the_ranking_names(bert):
    model, enc = bert
    loo = LeaveOneOut(model).attribute(dict(enc))
    evaluator = KendallTau(model, reference=loo)
    default = evaluator.evaluate(dict(enc))
    by_name = evaluator.evaluate(dict(enc), "attention")
    torch.testing.assert_close(by_name.tau, default.tau, equal_nan=True)
    got = evaluator.evaluate(dict(enc), "gradient")
    grad = AttentionGradient(model, layer=-1, heads="mean", query="cls").attribute(dict(enc))
    items = got.items
    for b in range(items.shape[0]):
        ref = scipy.stats.kendalltau(grad[b][items[b]].numpy(), loo[b][items[b]].numpy()).statistic
        assert float(got.tau[b]) == pytest.approx(ref, abs=1e-6)
    with pytest.raises(ValueError, match=r"attributions must be None, one of .*'attention'.*got 'attn'"):
        evaluator.evaluate(dict(enc), "attn")


def test_selection_checks_name_the_argument_and_pick_the_rows_the_attributions_read():
    from attnfaith.attr._base import select_query
    from attnfaith.evaluators import selection as sel

    with pytest.raises(ValueError, match="query"):
        sel.check_query("first")
    with pytest.raises(TypeError, match="query"):
        sel.check_query(1.5)
    with pytest.raises(ValueError, match="single row"):
        sel.check_query("mean", single_row=True)
    assert sel.check_query("mean") == "mean" and sel.check_query(-1, single_row=True) == -1
    with pytest.raises(TypeError, match="layer"):
        sel.check_layer("0")
    with pytest.raises(ValueError, match="layers"):
        sel.check_layers([], "layers")
    with pytest.raises(ValueError, match="heads"):
        sel.check_heads([])
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    assert sel.query_index("cls", 4, mask).tolist() == [0, 1]
    assert sel.query_index("last", 4, mask).tolist() == [2, 3]
    assert sel.query_index(-1, 4, mask).tolist() == [3, 3]
    assert sel.query_index("cls", 1, mask).tolist() == [0, 0]
    with pytest.raises(ValueError, match="query"):
        sel.query_index(4, 4, mask)
    rows = torch.arange(2 * 4 * 3, dtype=torch.float).view(2, 4, 3)
    for q in ("cls", "last", 1, -2):
        picked = rows[torch.arange(2), sel.query_index(q, 4, mask)]
        assert torch.equal(picked, select_query(rows, q, mask))


@pytest.mark.parametrize("evaluator", [PermutationTVD, ErasureFlip])
def test_negative_seed_is_refused_when_the_evaluator_is_built(bert, evaluator):
    model, _ = bert
    with pytest.raises(ValueError, match="seed must be >= 0, got -5"):
        evaluator(model, seed=-5)
    with pytest.raises(TypeError, match="seed must be an int"):
        evaluator(model, seed=1.5)


def test_token_deletion_of_a_row_that_is_all_items_runs_on_the_padding_left(bert):
    """A row whose every real token is an item (no special token outside them): deleting all of them leaves a row
    of padding only, which the model still runs (it used to crash with a zero-width tensor). The last curve point is
    the model's output on that row, computed here by hand."""
    model, _ = bert
    ids = torch.tensor([[10, 11, 12, 13]])
    enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    everything = torch.ones(1, 4, dtype=torch.bool)
    res = ErasureFlip(model, level="token", erase="delete", n_random=1).evaluate(enc, "random", mask=everything)
    pad = model.config.pad_token_id
    with torch.no_grad():
        p = model(input_ids=torch.tensor([[pad]]), attention_mask=torch.tensor([[0]])).logits.softmax(-1)[0]
    assert res.n_items.tolist() == [4]
    assert res.curve[0, 4].item() == pytest.approx(p[res.prediction[0]].item(), abs=1e-5)
