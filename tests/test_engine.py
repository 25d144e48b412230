"""attnfaith.engine: VariantRunner chunking, length buckets and the memory budget, against plain loops and hand
computations."""

from __future__ import annotations

import pytest
import torch

from attnfaith import engine
from attnfaith.engine import VariantRunner, bytes_per_variant, default_memory_budget, length_breaks
from attnfaith.testing import tiny_model


def rows_fn(calls: list[tuple[int, int]]):
    """``fn(start, stop)``: variant ``i`` is the row ``[i, i², -i]``; every call is recorded."""

    def fn(start: int, stop: int) -> torch.Tensor:
        calls.append((start, stop))
        i = torch.arange(start, stop)
        return torch.stack([i, i * i, -i], dim=1)

    return fn


@pytest.fixture(scope="module")
def bert():
    return tiny_model("bert")  # hidden 32, 4 heads (attnfaith/testing.py)


@pytest.mark.parametrize("n", [1, 2, 7, 16, 33])
@pytest.mark.parametrize("chunk", [1, 3, 8, 16, 100])
def test_run_equals_one_call(bert, n, chunk):
    calls: list[tuple[int, int]] = []
    out = VariantRunner(bert, max_examples_per_batch=chunk).run(n, rows_fn(calls), seq_len=10)
    assert torch.equal(out, rows_fn([])(0, n))
    # the plain loop: consecutive slices of `chunk` variants, the last one shorter
    assert calls == [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


@pytest.mark.parametrize("breaks", [[], [5], [3, 4, 11], [0, 5, 5, 20, 40, -1]])
def test_run_with_breaks(bert, breaks):
    n, chunk = 20, 4
    calls: list[tuple[int, int]] = []
    out = VariantRunner(bert, max_examples_per_batch=chunk).run(n, rows_fn(calls), seq_len=10, breaks=breaks)
    assert torch.equal(out, rows_fn([])(0, n))
    bounds = sorted({0, n, *(b for b in breaks if 0 < b < n)})
    expected = [(s, min(s + chunk, hi)) for lo, hi in zip(bounds[:-1], bounds[1:]) for s in range(lo, hi, chunk)]
    assert calls == expected
    assert all(0 < stop - start <= chunk for start, stop in calls)
    starts = {start for start, _ in calls}
    assert all(b in starts for b in breaks if 0 < b < n)  # a new chunk starts at every break
    assert [c[0] for c in calls[1:]] == [c[1] for c in calls[:-1]]  # no gap, no overlap


def test_breaks_by_hand(bert):
    calls: list[tuple[int, int]] = []
    VariantRunner(bert, max_examples_per_batch=4).run(10, rows_fn(calls), seq_len=3, breaks=[3, 6])
    assert calls == [(0, 3), (3, 6), (6, 10)]
    calls.clear()
    VariantRunner(bert, max_examples_per_batch=2).run(10, rows_fn(calls), seq_len=3, breaks=[3, 6])
    assert calls == [(0, 2), (2, 3), (3, 5), (5, 6), (6, 8), (8, 10)]


def test_no_variants_is_an_error(bert):
    with pytest.raises(ValueError, match="no variants"):
        VariantRunner(bert, max_examples_per_batch=4).run(0, rows_fn([]), seq_len=3)


def test_bytes_per_variant_by_hand(bert):
    # 2 · 4 bytes · (10 · T · hidden + 3 · heads · T²) + 1 with hidden 32, heads 4
    assert bytes_per_variant(bert, 10) == 2 * 4 * (10 * 10 * 32 + 3 * 4 * 10 * 10) + 1 == 35201
    assert bytes_per_variant(bert, 1, dtype_bytes=2) == 2 * 2 * (10 * 32 + 3 * 4) + 1 == 1329


def test_chunk_size_from_the_memory_budget(bert):
    # 1e6 // 35201 = 28 (28 · 35201 = 985628 ≤ 1e6 < 29 · 35201 = 1020829)
    assert VariantRunner(bert, memory_budget=1_000_000).chunk_size(10) == 28
    assert VariantRunner(bert, memory_budget=35201).chunk_size(10) == 1
    assert VariantRunner(bert, memory_budget=1).chunk_size(10) == 1  # at least one variant
    # at most 4096 (on a device without the CPU cap; an explicit budget: no device is queried)
    assert VariantRunner(bert, memory_budget=1 << 40).chunk_size(10, "cuda") == 4096
    # the default budget on the CPU is 2 GiB: 2**31 // 35201 = 61006 → 4096 at most; at T = 512:
    # 2 · 4 · (10 · 512 · 32 + 3 · 4 · 512²) + 1 = 26476545 bytes → 2**31 // 26476545 = 81
    assert default_memory_budget("cpu") == 2 * 1024 ** 3
    assert VariantRunner(bert, memory_budget=2 * 1024 ** 3).chunk_size(512, "cuda") == 81
    # an explicit max_examples_per_batch wins over any budget and the CPU cap
    assert VariantRunner(bert, max_examples_per_batch=3, memory_budget=1).chunk_size(512) == 3
    assert VariantRunner(bert, max_examples_per_batch=5000).chunk_size(512) == 5000


def test_cpu_chunk_cap_by_hand(bert, monkeypatch):
    # on the CPU: min(budget chunk, CPU_CHUNK_BYTES // (16 · hidden · T)), at least 1; hidden 32 → 512 bytes a token
    monkeypatch.setattr(engine, "CPU_CHUNK_BYTES", 512_000)
    runner = VariantRunner(bert)  # default budget: 4096 variants of width 10, 81 of width 512 (see above)
    assert engine.cpu_chunk_cap(bert, 10) == 100  # 512000 // (16 · 32 · 10)
    assert runner.chunk_size(10) == runner.chunk_size(10, "cpu") == 100
    assert runner.chunk_size(512) == 1  # 512000 // 262144
    assert runner.chunk_size(2000) == 1  # never 0
    assert VariantRunner(bert, memory_budget=1_000_000).chunk_size(10) == 28  # the budget is smaller than the cap
    monkeypatch.setattr(engine, "CPU_CHUNK_BYTES", 10 ** 12)
    assert runner.chunk_size(10) == 4096 and runner.chunk_size(512) == 81  # the memory budget again
    # the default: 6 MiB → 12288 tokens of a hidden-32 model, 1024 of MiniLM's hidden 384
    monkeypatch.undo()
    assert VariantRunner(bert).chunk_size(10) == 1228 and VariantRunner(bert).chunk_size(512) == 24
    assert engine.CPU_CHUNK_BYTES // (16 * 384) == 1024


def test_chunks_follow_the_widths_of_length_buckets(bert, monkeypatch):
    # widths sorted longest first, cut at length_breaks: each interval gets the chunk of its own longest row
    monkeypatch.setattr(engine, "CPU_CHUNK_BYTES", 16 * 32 * 100)  # 100 tokens of a hidden-32 model
    widths = torch.tensor([50, 50, 50, 20, 20, 20, 20, 20, 20, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9])
    breaks = length_breaks(widths)
    assert breaks == [3, 9]  # multiples of 8: 56, 24, 16
    calls: list[tuple[int, int]] = []
    out = VariantRunner(bert).run(len(widths), rows_fn(calls), seq_len=50, breaks=breaks, widths=widths)
    assert torch.equal(out, rows_fn([])(0, len(widths)))
    # chunks: 100 // 50 = 2 rows, 100 // 20 = 5 rows, 100 // 9 = 11 rows
    assert calls == [(0, 2), (2, 3), (3, 8), (8, 9), (9, 20), (20, 23)]
    # without widths: every interval is cut by the chunk of seq_len
    calls.clear()
    VariantRunner(bert).run(len(widths), rows_fn(calls), seq_len=50, breaks=breaks)
    assert max(stop - start for start, stop in calls) == 2
    with pytest.raises(ValueError, match="widths"):
        VariantRunner(bert).run(4, rows_fn([]), seq_len=50, widths=[3, 2])


def test_budget_chunks_never_exceed_the_chunk_size(bert):
    runner = VariantRunner(bert, memory_budget=1_000_000)
    calls: list[tuple[int, int]] = []
    out = runner.run(100, rows_fn(calls), seq_len=10, breaks=[50, 51])
    assert torch.equal(out, rows_fn([])(0, 100))
    assert max(stop - start for start, stop in calls) == 28
    assert calls == [(0, 28), (28, 50), (50, 51), (51, 79), (79, 100)]


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-2, ValueError), (True, TypeError), (2.0, TypeError)])
def test_bad_max_examples_per_batch(bert, bad, error):
    with pytest.raises(error, match="max_examples_per_batch"):
        VariantRunner(bert, max_examples_per_batch=bad)


@pytest.mark.parametrize("bad", [0, -1, "1GB"])
def test_bad_memory_budget(bert, bad):
    with pytest.raises(ValueError, match="memory_budget"):
        VariantRunner(bert, memory_budget=bad)


def test_length_breaks_on_a_hand_made_mask():
    mask = torch.zeros(6, 20, dtype=torch.long)
    for row, n in enumerate([17, 16, 9, 8, 8, 1]):  # already longest first
        mask[row, :n] = 1
    lengths = mask.sum(dim=1)
    # rounded up to multiples of 8: 24, 16, 16, 8, 8, 8 → new chunks at rows 1 and 3
    assert length_breaks(lengths) == [1, 3]
    # multiples of 4: 20, 16, 12, 8, 8, 4 → a new chunk at rows 1, 2, 3 and 5
    assert length_breaks(lengths, granularity=4) == [1, 2, 3, 5]
    assert length_breaks(lengths, granularity=1) == [1, 2, 3, 5]
    assert length_breaks(lengths, granularity=32) == []
    assert length_breaks(torch.zeros(0, dtype=torch.long)) == []


def test_length_breaks_equal_a_plain_loop():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 60, (50,), generator=g).sort(descending=True).values
    for gran in (1, 3, 8, 16):
        rounded = [(int(x) + gran - 1) // gran for x in lengths]
        expected = [i for i in range(1, len(rounded)) if rounded[i] != rounded[i - 1]]
        assert length_breaks(lengths, gran) == expected


def test_length_buckets_keep_padding_below_the_granularity(bert):
    # chunks cut at length_breaks: within a chunk the longest row needs at most granularity - 1 more tokens than the
    # shortest one
    lengths = torch.tensor([31, 30, 25, 24, 17, 16, 15, 9, 2, 1])
    calls: list[tuple[int, int]] = []
    # rounded up to multiples of 8: 32, 32, 32, 24, 24, 16, 16, 16, 8, 8
    assert length_breaks(lengths) == [3, 5, 8]
    VariantRunner(bert, max_examples_per_batch=100).run(10, rows_fn(calls), seq_len=31, breaks=length_breaks(lengths))
    assert calls == [(0, 3), (3, 5), (5, 8), (8, 10)]
    for start, stop in calls:
        assert int(lengths[start]) - int(lengths[stop - 1]) <= 7
