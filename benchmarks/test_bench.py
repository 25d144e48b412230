"""pytest-benchmark suite: the cases of benchmarks/run.py at a smaller size, fast and plain side by side.

    .venv/bin/python -m pytest benchmarks/test_bench.py --benchmark-only [--benchmark-group-by=param:case]

Not part of `make test` (its testpaths are tests/). The ratios to report come from benchmarks/run.py, which
alternates the two sides within one run; this suite is for tracking each path over time.
"""

from __future__ import annotations

import pytest
import torch

from attnfaith import ErasureFlip, KendallTau, LeaveOneOut, PermutationTVD
from attnfaith.metrics import kendall_tau
from attnfaith.plain_loops import plain_erasure_flip, plain_permutation_tvd
from attnfaith.testing import tiny_batch, tiny_model

pytest.importorskip("pytest_benchmark")


@pytest.fixture(scope="module")
def setup():
    model = tiny_model("bert", num_layers=4, seed=0, hidden_size=64, intermediate_size=128)
    enc = tiny_batch("bert", model, batch_size=8, seq_len=24)
    scores = torch.randn(enc["input_ids"].shape, generator=torch.Generator().manual_seed(0))
    return model, enc, scores


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "plain"])
@pytest.mark.parametrize("level", ["attention", "token-mask", "token-delete"])
def test_erasure(benchmark, setup, level, batched):
    model, enc, scores = setup
    kind, _, erase = level.partition("-")
    ef = ErasureFlip(model, level=kind, erase=erase or "delete")
    benchmark(lambda: ef.evaluate(enc, scores) if batched else plain_erasure_flip(ef, enc, scores))


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "plain"])
def test_permutation(benchmark, setup, batched):
    model, enc, _ = setup
    pt = PermutationTVD(model, n_permutations=20)
    benchmark(lambda: pt.evaluate(enc) if batched else plain_permutation_tvd(pt, enc))


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "plain"])
def test_loo_kendall(benchmark, setup, batched):
    model, enc, _ = setup
    kt = KendallTau(model, reference=LeaveOneOut(model, batched=batched))
    benchmark(lambda: kt.evaluate(enc))


@pytest.mark.parametrize("impl", ["attnfaith", "scipy-loop"])
def test_kendall_tau(benchmark, impl):
    from scipy.stats import kendalltau

    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 8, (200, 64), generator=g).double()
    b = torch.randn(200, 64, generator=g, dtype=torch.float64)
    if impl == "attnfaith":
        benchmark(lambda: kendall_tau(a, b))
    else:
        an, bn = a.numpy(), b.numpy()
        benchmark(lambda: [kendalltau(an[i], bn[i], method="asymptotic") for i in range(len(an))])
