"""The fast paths (prefix cache, early exit, length bucketing, memory budget) against the plain paths.

Every fast path must return the plain path's numbers: the prefix-cached variants against complete forwards on every
architecture of the foundation issue, early exit against the full curve, and the chunking chosen from a small
memory budget must keep peak memory within the budget + 20 %.
"""

from __future__ import annotations

import gc
import os

import pytest
import torch

from attnfaith import ErasureFlip, LeaveOneOut, PermutationTVD
from attnfaith._inputs import call_model, prepare_batch
from attnfaith.attention import AttentionTap
from attnfaith.attention.prefix import PrefixCache
from attnfaith.engine import bytes_per_variant
from attnfaith.testing import ARCHITECTURES, tiny_batch, tiny_model


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _scores(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch["input_ids"].shape, generator=g)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_prefix_cache_matches_complete_forwards(arch):
    model = tiny_model(arch, num_layers=3, seed=1)
    enc = tiny_batch(arch, model, batch_size=3, seq_len=9)
    scores = _scores(enc)
    fast = ErasureFlip(model, level="attention", layer=-1, max_examples_per_batch=5).evaluate(enc, scores)
    plain = ErasureFlip(model, level="attention", layer=-1, prefix=False, max_examples_per_batch=5).evaluate(
        enc, scores
    )
    assert torch.equal(torch.nan_to_num(fast.n_removed, -1), torch.nan_to_num(plain.n_removed, -1))
    assert torch.equal(fast.flipped, plain.flipped)
    torch.testing.assert_close(fast.curve, plain.curve, atol=1e-5, rtol=0, equal_nan=True)

    p_fast = PermutationTVD(model, n_permutations=6, max_examples_per_batch=4).evaluate(enc)
    p_plain = PermutationTVD(model, n_permutations=6, prefix=False, max_examples_per_batch=4).evaluate(enc)
    assert torch.equal(p_fast.permutations, p_plain.permutations)
    torch.testing.assert_close(p_fast.tvd, p_plain.tvd, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_prefix_cache_applies_where_blocks_are_distinct(arch):
    """The cache is used on every architecture with a block list (all but ALBERT, whose layers share one module),
    and the model has no stand-in left after the context."""
    model = tiny_model(arch, num_layers=3)
    batch = prepare_batch(model, tiny_batch(arch, model))
    with torch.no_grad(), AttentionTap(model, capture=None) as tap:
        call_model(model, batch)
        with PrefixCache(model, tap, len(tap.layers) - 1) as cache:
            cache.prime(lambda rows: call_model(model, batch.index_rows(rows)), batch.size)
            assert cache.active == (arch != "albert"), cache.reason
    assert all("forward" not in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
@pytest.mark.parametrize("level", ["attention", "token"])
def test_early_exit_matches_full_curve(arch, level):
    model = tiny_model(arch, num_layers=2, seed=2)
    enc = tiny_batch(arch, model, batch_size=4, seq_len=10)
    scores = _scores(enc, 1)
    ef = ErasureFlip(model, level=level, max_examples_per_batch=3)
    full = ef.evaluate(enc, scores)
    fast = ef.evaluate(enc, scores, full_curve=False)
    assert torch.equal(torch.nan_to_num(full.n_removed, -1), torch.nan_to_num(fast.n_removed, -1))
    assert torch.equal(full.flipped, fast.flipped)
    for b in range(len(full)):
        stop = int(full.n_removed[b]) if bool(full.flipped[b]) else int(full.n_items[b])
        torch.testing.assert_close(fast.curve[b, : stop + 1], full.curve[b, : stop + 1], atol=1e-5, rtol=0)
        assert torch.isnan(fast.curve[b, stop + 1:]).all()
    # AOPC needs the whole curve: defined exactly where the early-exit curve is complete
    assert torch.equal(torch.isnan(fast.aopc), fast.flipped & (fast.n_removed < fast.n_items))


def test_random_ranking_early_exit_matches():
    model = tiny_model("bert", seed=3)
    enc = tiny_batch("bert", model, batch_size=3)
    ef = ErasureFlip(model, level="token", erase="mask", n_random=3)
    full, fast = ef.evaluate(enc, "random"), ef.evaluate(enc, "random", full_curve=False)
    assert torch.equal(torch.nan_to_num(full.n_removed_per_order, -1), torch.nan_to_num(fast.n_removed_per_order, -1))


def _peak_rss_delta(fn) -> int:
    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(key)

    gc.collect()
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
        f.write("5")
    fn()
    return status("VmHWM") - base


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc/self/clear_refs")
def test_peak_memory_stays_within_budget():
    """A budget of 48 MiB on a model whose whole variant set would take several times that: the runner chunks the
    variants so that peak memory above the starting point stays within the budget + 20 %."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=200, hidden_size=256, num_hidden_layers=2, num_attention_heads=8,
                        intermediate_size=1024, max_position_embeddings=256)
    model = BertForSequenceClassification(config).eval()
    ids = torch.randint(5, 200, (8, 128))
    enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    budget = 48 << 20
    per_variant = bytes_per_variant(model, 128)
    n_variants = 8 * 128
    assert per_variant * n_variants > 4 * budget  # unchunked, the variants would need far more than the budget
    loo = LeaveOneOut(model, memory_budget=budget)
    loo.attribute(enc)  # warm-up: allocator pools, lazy initialisation
    # the least of three measurements: what else the process or the machine does only ever adds to one
    peak = min(_peak_rss_delta(lambda: loo.attribute(enc)) for _ in range(3))
    assert peak <= 1.2 * budget, f"peak {peak / 2**20:.1f} MiB over a {budget / 2**20:.0f} MiB budget"


def test_length_breaks_against_a_plain_loop():
    from attnfaith.engine import VariantRunner, length_breaks

    lengths = torch.tensor([49, 48, 41, 40, 40, 33, 17, 16, 9, 8, 1])
    expected = [i for i in range(1, len(lengths))
                if -(-int(lengths[i]) // 8) != -(-int(lengths[i - 1]) // 8)]
    assert length_breaks(lengths) == expected == [1, 3, 6, 7, 9]
    # the runner never lets a chunk cross a break, and covers every variant once, in order
    seen = []
    VariantRunner(torch.nn.Linear(1, 1), max_examples_per_batch=2).run(
        len(lengths), lambda s, e: seen.append((s, e)) or torch.zeros(e - s), seq_len=1, breaks=expected)
    assert [i for s, e in seen for i in range(s, e)] == list(range(len(lengths)))
    assert all(not any(s < b < e for b in expected) for s, e in seen)
