"""Per-example seeds: every random draw of an example depends on the run's seed and that example's id only.

A result must not depend on which chunk, batch, shard, process or device an example lands in. So no draw is made
for a whole batch from one generator: each row ``b`` draws from its own CPU ``torch.Generator`` seeded with

    example_seed(seed, example_id) = int(numpy.random.SeedSequence([seed, example_id]).generate_state(1, numpy.uint32)[0])

(NumPy's ``SeedSequence`` hashes the pair ``(seed, example_id)`` into well-mixed, statistically independent
states; the first 32-bit word of that state seeds torch's CPU Mersenne Twister, which uses 32 bits of any seed).
``example_id`` is the example's global id: its index in the dataset (the study runner, the replication recipe), or
what the caller passes as ``example_ids=`` to an evaluator (default ``0..B-1``, row ``b`` = example ``b`` of the
call). Calling an evaluator on rows 0..9 at once, or twice on rows 0..4 and 5..9 with ``example_ids`` 0..4 and
5..9, draws the same numbers for every example.

Draws are made on the CPU (then moved to the device) and only at an example's own positions — its items or its
real keys, in increasing position order — so padding, padding side, the batch's length and the device do not
change them (:func:`rand_at`, :func:`randn_at`). Successive draws of one example (several random orders, several
permutations) come one after another from its generator, in a documented order.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["check_seed", "example_seed", "example_generators", "check_example_ids", "rand_at", "randn_at"]


def check_seed(value: Any, name: str = "seed") -> int:
    """``value`` as an int if it is a non-negative integer (not a bool): a seed or an example id.
    ``TypeError`` / ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def example_seed(seed: int, example_id: int) -> int:
    """The seed of example ``example_id`` under the run's ``seed`` (both non-negative ints):
    ``int(np.random.SeedSequence([seed, example_id]).generate_state(1, dtype=np.uint32)[0])``, in ``0 .. 2**32 - 1``.
    """
    s = check_seed(seed, "seed")
    e = check_seed(example_id, "example_id")
    return int(np.random.SeedSequence([s, e]).generate_state(1, dtype=np.uint32)[0])


def check_example_ids(example_ids: Any, batch_size: int, name: str = "example_ids") -> list[int]:
    """``example_ids`` (a LongTensor or a sequence of ``batch_size`` non-negative ints) as a list; None gives
    ``0 .. batch_size - 1``. ``TypeError`` / ``ValueError`` naming ``name`` otherwise. Ids need not be distinct
    (a repeated id draws the same numbers)."""
    if example_ids is None:
        return list(range(batch_size))
    if isinstance(example_ids, torch.Tensor):
        if example_ids.dim() != 1 or example_ids.dtype.is_floating_point or example_ids.dtype == torch.bool:
            raise TypeError(f"{name} must be a 1-D integer tensor or a sequence of ints, got a tensor of "
                            f"dtype {example_ids.dtype} and shape {tuple(example_ids.shape)}")
        ids = [int(x) for x in example_ids.tolist()]
    elif isinstance(example_ids, (str, bytes)) or not isinstance(example_ids, (Sequence, np.ndarray, range)):
        raise TypeError(f"{name} must be a LongTensor or a sequence of ints, got {type(example_ids).__name__}")
    else:
        ids = list(example_ids)
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
                raise TypeError(f"{name} must hold ints, got {i!r}")
        ids = [int(i) for i in ids]
    if len(ids) != batch_size:
        raise ValueError(f"{name} has {len(ids)} entries but the batch has {batch_size} rows")
    bad = [i for i in ids if i < 0]
    if bad:
        raise ValueError(f"{name} must be >= 0, got {bad[0]}")
    return ids


def example_generators(seed: int, example_ids: Any, batch_size: int | None = None) -> list[torch.Generator]:
    """One CPU ``torch.Generator`` per row: ``torch.Generator().manual_seed(example_seed(seed, id))`` for each id of
    ``example_ids`` (checked by :func:`check_example_ids`; None needs ``batch_size`` and gives ids ``0..B-1``)."""
    if example_ids is None and batch_size is None:
        raise ValueError("example_generators: pass example_ids or batch_size")
    ids = check_example_ids(example_ids, len(example_ids) if batch_size is None else batch_size)
    check_seed(seed, "seed")
    return [torch.Generator().manual_seed(example_seed(seed, i)) for i in ids]


def _draw_at(fn, where: torch.Tensor, generators: Sequence[torch.Generator], lead: tuple[int, ...],
             dtype: torch.dtype) -> torch.Tensor:
    w = where.detach().to("cpu", torch.bool)
    if w.dim() != 2:
        raise ValueError(f"where must be [B, T], got shape {tuple(w.shape)}")
    B, T = w.shape
    if len(generators) != B:
        raise ValueError(f"{len(generators)} generators for {B} rows")
    out = torch.zeros((B,) + tuple(lead) + (T,), dtype=dtype)
    for b in range(B):
        pos = w[b].nonzero().flatten()
        if pos.numel():
            out[b, ..., pos] = fn(tuple(lead) + (pos.numel(),), generator=generators[b], dtype=dtype)
    return out.to(where.device)


def rand_at(where: torch.Tensor, generators: Sequence[torch.Generator], lead: tuple[int, ...] = (),
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[B, *lead, T]`` on ``where``'s device: row ``b`` gets ``torch.rand(*lead, k_b, generator=generators[b])``
    (CPU; ``k_b`` = the number of True positions of ``where[b]`` ``[B, T]``) at its True positions in increasing
    position order, 0 elsewhere. One call consumes exactly that draw from each generator."""
    return _draw_at(torch.rand, where, generators, lead, dtype)


def randn_at(where: torch.Tensor, generators: Sequence[torch.Generator], lead: tuple[int, ...] = (),
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """As :func:`rand_at` with ``torch.randn`` (standard normal draws)."""
    return _draw_at(torch.randn, where, generators, lead, dtype)
