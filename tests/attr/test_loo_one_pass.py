"""LeaveOneOut runs its reference forward and its deletions in one pass: exactly ``B + Σ n_items`` rows through the
model, in as many forwards as the chunking says (counted with a hook on the model), with the plain loop's numbers.
With the readout path (the default) the first chunk also pays its check: two forwards (the full one and the head
probe) of its first ``min(4, rows)`` rows."""

from __future__ import annotations

import math

import pytest
import torch

from attnfaith import LeaveOneOut
from attnfaith.engine import length_breaks
from attnfaith.testing import RowCounter, tiny_batch, tiny_model


def _items(enc, model):
    from attnfaith.testing import special_token_ids

    special = torch.isin(enc["input_ids"], torch.tensor(sorted(special_token_ids(model))))
    return enc["attention_mask"].bool() & ~special


@pytest.mark.parametrize("arch", ["bert", "llama"])
@pytest.mark.parametrize("mode", ["delete", "mask"])
@pytest.mark.parametrize("chunk", [1, 4, None])
@pytest.mark.parametrize("readout", [False, True])
def test_one_pass_counts_and_values(arch, mode, chunk, readout):
    model = tiny_model(arch)
    enc = tiny_batch(arch, model, batch_size=4, seq_len=12, lengths=[12, 9, 7, 12])
    B = enc["input_ids"].shape[0]
    items = _items(enc, model)
    n = int(items.sum())
    plain = LeaveOneOut(model, mode, batched=False)
    counter = RowCounter(model)
    try:
        expected = plain.attribute(enc)
        assert (counter.calls, counter.rows) == (B + n, B + n)  # the plain loop: one row per forward
        counter.calls = counter.rows = 0
        got = LeaveOneOut(model, mode, max_examples_per_batch=chunk, readout=readout).attribute(enc)
    finally:
        counter.handle.remove()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    size = chunk or 10 ** 9
    # the forwards: each length bucket (right padding) or the whole set (left padding) cut into chunks
    lengths = enc["attention_mask"].sum(-1)
    if arch == "bert":  # right-padded: originals at their length, deletions one shorter (mask: same length)
        per_row = torch.cat([lengths, lengths.repeat_interleave(items.sum(-1)) - int(mode == "delete")])
        widths = per_row.sort(descending=True).values
        bounds = [0, *length_breaks(widths), B + n]
    else:
        bounds = [0, B + n]
    chunks = sum(math.ceil((hi - lo) / size) for lo, hi in zip(bounds[:-1], bounds[1:]))
    if not readout:
        assert (counter.rows, counter.calls) == (B + n, chunks)  # no separate reference forward
    else:
        first = min(size, bounds[1] - bounds[0])
        k = min(4, first)
        assert counter.rows == B + n + 2 * k
        assert counter.calls == chunks + 2 + int(first > k)


def test_no_items_runs_no_forward():
    model = tiny_model("bert")
    enc = tiny_batch("bert", model, batch_size=2, seq_len=6)
    counter = RowCounter(model)
    try:
        out = LeaveOneOut(model).attribute(enc, mask=torch.zeros(2, 6, dtype=torch.bool))
    finally:
        counter.handle.remove()
    assert counter.calls == 0 and torch.equal(out, torch.zeros(2, 6))
