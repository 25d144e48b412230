"""attnfaith.seeding: the per-example seed rule against a direct NumPy / torch computation, and the per-row draws of
the metrics and interventions that use it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnfaith.attention import real_key_permutation
from attnfaith.metrics import random_scores
from attnfaith.seeding import check_example_ids, example_generators, example_seed, rand_at, randn_at


def _direct_seed(seed, i):
    return int(np.random.SeedSequence([seed, i]).generate_state(1, dtype=np.uint32)[0])


def test_example_seed_matches_seedsequence():
    for seed, i in [(0, 0), (0, 1), (1, 0), (3, 7), (123, 456789), (2**32 - 1, 2**40)]:
        assert example_seed(seed, i) == _direct_seed(seed, i)
        assert 0 <= example_seed(seed, i) < 2**32
    assert example_seed(np.int64(5), np.int32(2)) == _direct_seed(5, 2)
    # distinct pairs give distinct streams here (not a property of 32-bit seeds in general, but of these)
    seeds = {example_seed(s, i) for s in range(4) for i in range(50)}
    assert len(seeds) == 200
    with pytest.raises(ValueError, match="seed"):
        example_seed(-1, 0)
    with pytest.raises(ValueError, match="example_id"):
        example_seed(0, -3)
    with pytest.raises(TypeError, match="seed"):
        example_seed(1.5, 0)


def test_example_generators_are_seeded_per_id():
    gens = example_generators(9, [4, 0, 4])
    direct = [torch.rand(6, generator=torch.Generator().manual_seed(_direct_seed(9, i))) for i in (4, 0, 4)]
    for g, d in zip(gens, direct):
        assert torch.equal(torch.rand(6, generator=g), d)
    # default ids: 0..B-1
    a = [torch.rand(3, generator=g) for g in example_generators(2, None, batch_size=3)]
    b = [torch.rand(3, generator=g) for g in example_generators(2, torch.arange(3))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_check_example_ids():
    assert check_example_ids(None, 3) == [0, 1, 2]
    assert check_example_ids(torch.tensor([5, 1]), 2) == [5, 1]
    assert check_example_ids(np.array([5, 1]), 2) == [5, 1]
    with pytest.raises(ValueError, match="example_ids has 1 entries"):
        check_example_ids([1], 2)
    with pytest.raises(ValueError, match="example_ids"):
        check_example_ids([1, -2], 2)
    with pytest.raises(TypeError, match="example_ids"):
        check_example_ids([1, 2.0], 2)
    with pytest.raises(TypeError, match="example_ids"):
        check_example_ids(torch.tensor([1.0, 2.0]), 2)
    with pytest.raises(TypeError, match="example_ids"):
        check_example_ids("ab", 2)


def test_rand_at_draws_only_at_the_rows_positions():
    where = torch.tensor([[True, True, False, True, False], [False, False, True, True, True]])
    out = rand_at(where, example_generators(1, [10, 11]), lead=(2,))
    assert out.shape == (2, 2, 5)
    for b, i in enumerate([10, 11]):
        g = torch.Generator().manual_seed(_direct_seed(1, i))
        d = torch.rand(2, int(where[b].sum()), generator=g)
        assert torch.equal(out[b][:, where[b]], d)
        assert (out[b][:, ~where[b]] == 0).all()
    n = randn_at(where, example_generators(1, [10, 11]))
    g = torch.Generator().manual_seed(_direct_seed(1, 11))
    assert torch.equal(n[1][where[1]], torch.randn(3, generator=g))


def test_random_scores_per_row_generators():
    # the same row, padded on the left or on the right, in another batch: the same scores on its items
    a = torch.tensor([[True, True, True, False, False], [True, False, False, False, False]])
    b = torch.tensor([[False, False, False, True, True, True]])
    sa = random_scores(a, generator=example_generators(3, [8, 9]))
    sb = random_scores(b, generator=example_generators(3, [8]))
    assert torch.equal(sa[0][a[0]], sb[0][b[0]])
    assert (sa[~a] == 0).all() and (sb[~b] == 0).all()
    with pytest.raises(ValueError, match="one generator per row"):
        random_scores(a, generator=example_generators(3, [8]))


def test_real_key_permutation_per_row_generators():
    km = torch.tensor([[False, True, True, True, True, False, False], [True, True, True, True, True, True, True]])
    perm = real_key_permutation(km, 3, generator=example_generators(5, [2, 6]), heads=2)
    assert perm.shape == (2, 3, 2, 7)
    for b, i in enumerate([2, 6]):
        real = km[b].nonzero().flatten()
        noise = torch.rand(3, 2, real.numel(), generator=torch.Generator().manual_seed(_direct_seed(5, i)))
        for p in range(3):
            for h in range(2):
                expected = torch.arange(7)
                expected[real] = real[noise[p, h].argsort()]
                assert torch.equal(perm[b, p, h], expected)
    # row 0 alone, shifted by two padding positions: the same permutation of its keys
    alone = real_key_permutation(torch.tensor([[False, False, False, True, True, True, True]]), 3,
                                 generator=example_generators(5, [2]), heads=2)
    assert torch.equal(alone[0][..., 3:] - 3, perm[0][..., 1:5] - 1)
