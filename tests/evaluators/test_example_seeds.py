"""Per-example seeds: every random evaluator and ranking gives each example the same draws whether it is evaluated in
one call on the whole batch, in sub-batches or alone (with the matching ``example_ids``), whatever the padding of
its batch and ``max_examples_per_batch``.

The reference for a row is the evaluator run on that row alone, with its padding removed (so its batch-mates and
the batch's length are gone); for the permutations also a plain argsort of the row's own draws
(:func:`attnfaith.plain_loops.plain_permutation_tvd`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnfaith import AdversarialAttention, ErasureFlip, KendallTau, PermutationTVD, SingleWeightErasure
from attnfaith.seeding import example_seed
from attnfaith.plain_loops import plain_permutation_tvd
from attnfaith.testing import tiny_batch, tiny_model

IDS = [17, 3, 250, 4, 99]  # global example ids of the batch's rows (not 0..B-1, and not sorted)


@pytest.fixture(scope="module", params=["bert", "llama"])  # right and left padding
def setup(request):
    arch = request.param
    model = tiny_model(arch, seed=3, std=0.4)
    enc = tiny_batch(arch, model, batch_size=5, seq_len=11, lengths=[11, 7, 5, 9, 6], seed=2)
    return arch, model, enc


def _row(enc, b):
    """Row ``b`` alone, its padding removed; and the offset of its first real position in the batch."""
    m = enc["attention_mask"][b].bool()
    pos = m.nonzero().flatten()
    lo, hi = int(pos[0]), int(pos[-1]) + 1
    return {k: v[b : b + 1, lo:hi] for k, v in enc.items()}, lo


def _rows(enc, rows):
    return {k: v[rows] for k, v in enc.items()}


def _same_float(a, b, tol=1e-6):
    a, b = float(a), float(b)
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def _check_rows(whole, parts, check):
    """``check(b, part_result, part_row)`` for every row ``b`` of the whole batch found in ``parts``:
    ``[(rows, result, offsets)]``."""
    seen = set()
    for rows, res, offsets in parts:
        for j, b in enumerate(rows):
            check(b, res, j, offsets[j])
            seen.add(b)
    assert seen == set(range(len(IDS)))


def _splits(enc):
    """The whole batch, two sub-batches (kept padded), and every row alone without padding."""
    first = [int(enc["attention_mask"][b].nonzero()[0]) for b in range(len(IDS))]  # kept padded: same positions
    yield [([0, 1], _rows(enc, [0, 1]), first[0:2]), ([2, 3, 4], _rows(enc, [2, 3, 4]), first[2:5])]
    singles = []
    for b in range(len(IDS)):
        row, _ = _row(enc, b)
        singles.append(([b], row, [0]))  # alone, unpadded: its first real position is 0
    yield singles


def test_example_seed_is_numpy_seedsequence():
    # the documented definition, computed directly
    for seed, i in [(0, 0), (0, 1), (1, 0), (7, 250), (2**32 - 1, 10**9)]:
        expected = int(np.random.SeedSequence([seed, i]).generate_state(1, dtype=np.uint32)[0])
        assert example_seed(seed, i) == expected


@pytest.mark.parametrize("per_head", [False, True])
def test_permutation_tvd_per_example(setup, per_head):
    arch, model, enc = setup
    pt = PermutationTVD(model, n_permutations=4, seed=5, per_head=per_head)
    whole = pt.evaluate(enc, example_ids=IDS, max_examples_per_batch=64)
    # the plain reference: each row's own draws sorted by hand, one forward per permutation
    ref_tvd, ref_perms = plain_permutation_tvd(pt, enc, example_ids=IDS)
    assert torch.equal(whole.permutations, ref_perms)
    torch.testing.assert_close(whole.tvd, ref_tvd, atol=1e-6, rtol=0)
    for mepb in (1, 3, 7):
        again = pt.evaluate(enc, example_ids=torch.tensor(IDS), max_examples_per_batch=mepb)
        assert torch.equal(again.permutations, whole.permutations)
        torch.testing.assert_close(again.tvd, whole.tvd, atol=1e-6, rtol=0)
    for parts in _splits(enc):
        results = [(rows, pt.evaluate(sub, example_ids=[IDS[b] for b in rows], max_examples_per_batch=3), offs)
                   for rows, sub, offs in parts]

        def check(b, res, j, lo):
            L = int(enc["attention_mask"][b].sum())
            first = int(enc["attention_mask"][b].nonzero()[0])
            mine = whole.permutations[b][..., first : first + L] - first
            assert torch.equal(res.permutations[j][..., lo : lo + L] - lo, mine)
            for i in range(4):
                assert _same_float(res.tvd[j, i], whole.tvd[b, i])

        _check_rows(whole, results, check)
    # another id draws other permutations; the default ids are 0..B-1
    other = pt.evaluate(enc, example_ids=[i + 1 for i in IDS])
    assert not torch.equal(other.permutations, whole.permutations)
    assert torch.equal(pt.evaluate(enc).permutations, pt.evaluate(enc, example_ids=range(5)).permutations)


def test_erasure_random_orders_per_example(setup):
    arch, model, enc = setup
    for level in ("token", "attention"):
        ef = ErasureFlip(model, level=level, n_random=3, seed=11)
        whole = ef.evaluate(enc, "random", example_ids=IDS, max_examples_per_batch=64)
        for mepb in (1, 5):
            again = ef.evaluate(enc, "random", example_ids=IDS, max_examples_per_batch=mepb)
            assert torch.equal(again.n_removed_per_order.nan_to_num(-1), whole.n_removed_per_order.nan_to_num(-1))
        for parts in _splits(enc):
            results = [(rows, ef.evaluate(sub, "random", example_ids=[IDS[b] for b in rows]), offs)
                       for rows, sub, offs in parts]

            def check(b, res, j, lo):
                items_w = whole.items[b]
                items_p = res.items[j]
                for r in range(3):
                    assert torch.equal(res.order_scores[r][j][items_p], whole.order_scores[r][b][items_w])
                assert torch.equal(res.n_removed_per_order[j].nan_to_num(-1),
                                   whole.n_removed_per_order[b].nan_to_num(-1))
                n = int(whole.n_items[b])
                torch.testing.assert_close(res.curve[j, : n + 1], whole.curve[b, : n + 1], atol=1e-6, rtol=0)
                assert _same_float(res.aopc[j], whole.aopc[b])

            _check_rows(whole, results, check)


def test_erasure_random_orders_are_the_rows_own_draws(setup):
    # order r of row b = the r-th torch.rand(k_b) of its generator, at its items in position order
    arch, model, enc = setup
    res = ErasureFlip(model, level="token", n_random=2, seed=4).evaluate(enc, "random", example_ids=IDS)
    for b, i in enumerate(IDS):
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([4, i]).generate_state(1, dtype=np.uint32)[0]))
        k = int(res.n_items[b])
        for r in range(2):
            assert torch.equal(res.order_scores[r][b][res.items[b]].cpu(), torch.rand(k, generator=g))


def test_kendall_random_ranking_per_example(setup):
    arch, model, enc = setup
    kt = KendallTau(model, reference="gradient")
    whole = kt.evaluate(enc, "random", seed=2, example_ids=IDS)
    for parts in _splits(enc):
        results = [(rows, kt.evaluate(sub, "random", seed=2, example_ids=[IDS[b] for b in rows]), offs)
                   for rows, sub, offs in parts]

        def check(b, res, j, lo):
            assert torch.equal(res.attributions[j][res.items[j]], whole.attributions[b][whole.items[b]])
            assert _same_float(res.tau[j], whole.tau[b], 1e-5)

        _check_rows(whole, results, check)


@pytest.mark.parametrize("attributions", ["attention", "random"])
def test_single_weight_random_item_per_example(setup, attributions):
    arch, model, enc = setup
    sw = SingleWeightErasure(model, seed=8)
    whole = sw.evaluate(enc, attributions, example_ids=IDS, max_examples_per_batch=64)
    again = sw.evaluate(enc, attributions, example_ids=IDS, max_examples_per_batch=2)
    assert torch.equal(again.random_index, whole.random_index) and torch.equal(again.top_index, whole.top_index)
    for parts in _splits(enc):
        results = [(rows, sw.evaluate(sub, attributions, example_ids=[IDS[b] for b in rows]), offs)
                   for rows, sub, offs in parts]

        def check(b, res, j, lo):
            first = int(enc["attention_mask"][b].nonzero()[0])
            assert int(res.top_index[j]) - lo == int(whole.top_index[b]) - first
            if bool(whole.has_random[b]):
                assert int(res.random_index[j]) - lo == int(whole.random_index[b]) - first
            else:
                assert int(res.random_index[j]) == -1
            assert _same_float(res.js_random[j], whole.js_random[b], 1e-5)
            assert _same_float(res.delta_js[j], whole.delta_js[b], 1e-5)
            assert bool(res.flip_random[j]) == bool(whole.flip_random[b])

        _check_rows(whole, results, check)


def test_adversarial_initialisation_per_example(setup):
    arch, model, enc = setup
    adv = AdversarialAttention(model, steps=0, seed=6)  # the random start only: exact
    whole = adv.evaluate(enc, example_ids=IDS, max_examples_per_batch=64)
    for parts in _splits(enc):
        results = [(rows, adv.evaluate(sub, example_ids=[IDS[b] for b in rows]), offs) for rows, sub, offs in parts]

        def check(b, res, j, lo):
            first = int(enc["attention_mask"][b].nonzero()[0])
            L = int(enc["attention_mask"][b].sum())
            for k in range(5):
                assert _same_float(res.candidate_jsd[j, k], whole.candidate_jsd[b, k], 1e-5)
            # the chosen weights on the row's own keys
            torch.testing.assert_close(res.weights[j][..., lo : lo + L], whole.weights[b][..., first : first + L],
                                       atol=1e-5, rtol=0)

        _check_rows(whole, results, check)
    # a few optimisation steps: examples never interact, whatever the chunking
    adv = AdversarialAttention(model, steps=3, seed=6)
    whole = adv.evaluate(enc, example_ids=IDS, max_examples_per_batch=64)
    for mepb in (5, 10):
        again = adv.evaluate(enc, example_ids=IDS, max_examples_per_batch=mepb)
        torch.testing.assert_close(again.candidate_jsd, whole.candidate_jsd, atol=1e-5, rtol=0)
    parts = [([b], adv.evaluate(_row(enc, b)[0], example_ids=[IDS[b]]), [0]) for b in range(5)]

    def check(b, res, j, lo):
        torch.testing.assert_close(res.candidate_jsd[j], whole.candidate_jsd[b], atol=1e-5, rtol=0)

    _check_rows(whole, parts, check)


def test_bad_example_ids(setup):
    arch, model, enc = setup
    pt = PermutationTVD(model, n_permutations=2)
    with pytest.raises(ValueError, match="example_ids"):
        pt.evaluate(enc, example_ids=[1, 2])
    with pytest.raises(ValueError, match="example_ids"):
        pt.evaluate(enc, example_ids=[0, 1, 2, 3, -1])
    with pytest.raises(TypeError, match="example_ids"):
        pt.evaluate(enc, example_ids=torch.zeros(5))
    with pytest.raises(ValueError, match="example_ids"):
        ErasureFlip(model, level="token").evaluate(enc, "attention", example_ids=[0])
