"""The batching engine every evaluator runs its variants through.

An evaluation turns each example into many *variants* (a permutation of its attention, the input with the top-k
items erased, ...). The engine runs ``n`` variants through the model in chunks of at most ``chunk`` variants and
concatenates the outputs, so that the work is a few large forwards rather than one forward per variant. Nothing
here synchronises with the host per variant, and nothing ties it to the CPU.

``max_examples_per_batch`` (Captum's name) is the number of variants in one forward. When it is None, the chunk is
chosen from ``memory_budget`` (bytes; default: 2 GiB on CPU, a quarter of the free memory on CUDA) and an estimate
of the activation memory of one variant.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from attnfaith.attention.model_facts import model_dims, model_device

__all__ = ["VariantRunner", "default_memory_budget", "bytes_per_variant", "length_breaks"]

_GIB = 1 << 30


def default_memory_budget(device: torch.device | str) -> int:
    """Bytes of activation memory one forward may use by default: a quarter of the free memory of a CUDA device
    (``torch.cuda.mem_get_info``), 2 GiB on any other device."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.25)
    return 2 * _GIB


def bytes_per_variant(model: nn.Module, seq_len: int, dtype_bytes: int = 4) -> int:
    """A generous estimate of the peak activation memory of one variant of length ``seq_len`` in inference mode:
    the widest live tensors of one layer (the FFN's 4·hidden, q/k/v, scores and probabilities) plus the residual
    stream, times a safety factor of 2: ``2 · dtype_bytes · (10 · seq_len · hidden + 3 · heads · seq_len²) + 1``
    (``hidden`` and ``heads`` from :func:`attnfaith.attention.model_facts.model_dims`)."""
    hidden, _, heads = model_dims(model)
    per_layer = seq_len * hidden * 10 + 3 * heads * seq_len * seq_len
    return int(2 * per_layer * dtype_bytes) + 1


class VariantRunner:
    """Run ``n`` variants in chunks: ``runner.run(n, fn)`` calls ``fn(start, stop)`` for consecutive slices and
    concatenates what it returns along the first axis.

    Args:
        model: the model (used for the memory estimate).
        max_examples_per_batch: variants per forward; None → from ``memory_budget``.
        memory_budget: bytes of activation memory one forward may use (see module docstring).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        max_examples_per_batch: int | None = None,
        memory_budget: int | None = None,
    ) -> None:
        if max_examples_per_batch is not None:
            if isinstance(max_examples_per_batch, bool) or not isinstance(max_examples_per_batch, int):
                raise TypeError("max_examples_per_batch must be a positive int or None")
            if max_examples_per_batch < 1:
                raise ValueError(f"max_examples_per_batch must be >= 1, got {max_examples_per_batch}")
        if memory_budget is not None and (not isinstance(memory_budget, (int, float)) or memory_budget <= 0):
            raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
        self.model = model
        self.max_examples_per_batch = max_examples_per_batch
        self.memory_budget = memory_budget

    def chunk_size(self, seq_len: int, device: torch.device | str | None = None) -> int:
        """Variants per forward: ``max_examples_per_batch`` when given, else
        ``max(1, min(4096, budget // bytes_per_variant(model, seq_len)))`` with ``budget`` the ``memory_budget`` or
        :func:`default_memory_budget` of ``device`` (default: the model's device)."""
        if self.max_examples_per_batch is not None:
            return self.max_examples_per_batch
        if device is None:
            device = model_device(self.model)
        budget = self.memory_budget if self.memory_budget is not None else default_memory_budget(device)
        return max(1, min(4096, int(budget // bytes_per_variant(self.model, seq_len))))

    def run(self, n: int, fn: Callable[[int, int], torch.Tensor], *, seq_len: int, device=None,
            breaks: Sequence[int] = ()) -> torch.Tensor:
        """``fn(start, stop)`` for consecutive slices of ``0..n``, concatenated along the first axis.

        The slices are the intervals between ``0``, ``n`` and the ``breaks`` inside ``(0, n)`` (indices where a new
        chunk must start: length buckets, see :func:`length_breaks`), each cut into pieces of
        :meth:`chunk_size` ``(seq_len, device)`` variants (the last piece of an interval may be shorter).
        ``ValueError`` when ``n`` is 0."""
        chunk = self.chunk_size(seq_len, device)
        bounds = sorted({0, n, *(b for b in breaks if 0 < b < n)})
        outs = [
            fn(start, min(start + chunk, stop))
            for lo, stop in zip(bounds[:-1], bounds[1:])
            for start in range(lo, stop, chunk)
        ]
        if not outs:
            raise ValueError("no variants to run")
        return torch.cat(outs, dim=0)


def length_breaks(sorted_lengths: torch.Tensor, granularity: int = 8) -> list[int]:
    """Chunk boundaries for length bucketing: ``sorted_lengths`` (a CPU tensor, longest first) is cut wherever the
    length rounded up to a multiple of ``granularity`` changes, so each forward pads its rows to at most
    ``granularity − 1`` tokens more than they need."""
    if sorted_lengths.numel() == 0:
        return []
    key = (sorted_lengths + granularity - 1) // granularity
    return (torch.nonzero(key[1:] != key[:-1]).flatten() + 1).tolist()
