"""The batching engine every evaluator runs its variants through.

An evaluation turns each example into many *variants* (a permutation of its attention, the input with the top-k
items erased, ...). The engine runs ``n`` variants through the model in chunks of at most ``chunk`` variants and
concatenates the outputs, so that the work is a few large forwards rather than one forward per variant. Nothing
here synchronises with the host per variant, and nothing ties it to the CPU.

``max_examples_per_batch`` (Captum's name) is the number of variants in one forward. When it is None, the chunk is
chosen from ``memory_budget`` (bytes; default: 2 GiB on CPU, a quarter of the free memory on CUDA) and an estimate
of the activation memory of one variant, and on the CPU also capped so that the chunk's feed-forward activation
stays within :data:`CPU_CHUNK_BYTES` (the CPU chunk policy: on a loaded CPU one forward of a few hundred variants is
slower per variant than forwards of a few dozen, whose activations stay in the caches; docs/performance.md, "Chunk
policy", has the measurement).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from attnfaith.attention.model_facts import model_dims, model_device

__all__ = ["VariantRunner", "default_memory_budget", "bytes_per_variant", "length_breaks", "variant_listener",
           "report_variants", "CPU_CHUNK_BYTES", "cpu_chunk_cap"]

_GIB = 1 << 30

#: The CPU chunk policy: the feed-forward activation of one forward (``tokens × 4·hidden`` float32 values, 16·hidden
#: bytes per token) is kept within this many bytes (the L2 caches of two cores and a share of the L3): 1024 tokens for
#: MiniLM (hidden 384), 512 for BERT-base. Measured on all-MiniLM-L6-v2: docs/performance.md, "Chunk policy".
CPU_CHUNK_BYTES = 6 << 20


def cpu_chunk_cap(model: nn.Module, seq_len: int) -> int:
    """Variants of width ``seq_len`` per forward on the CPU: ``max(1, CPU_CHUNK_BYTES // (16 · hidden · seq_len))``
    (``hidden`` from :func:`attnfaith.attention.model_facts.model_dims`)."""
    hidden = model_dims(model)[0]
    return max(1, CPU_CHUNK_BYTES // (16 * max(int(hidden), 1) * max(int(seq_len), 1)))


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
        ``max(1, min(4096, budget // bytes_per_variant(model, seq_len), cap))`` with ``budget`` the
        ``memory_budget`` or :func:`default_memory_budget` of ``device`` (default: the model's device) and, on the
        CPU, ``cap =`` :func:`cpu_chunk_cap` ``(model, seq_len)`` (no cap on other devices)."""
        if self.max_examples_per_batch is not None:
            return self.max_examples_per_batch
        device = torch.device(model_device(self.model) if device is None else device)
        budget = self.memory_budget if self.memory_budget is not None else default_memory_budget(device)
        chunk = min(4096, int(budget // bytes_per_variant(self.model, seq_len)))
        if device.type == "cpu":
            chunk = min(chunk, cpu_chunk_cap(self.model, seq_len))
        return max(1, chunk)

    def run(self, n: int, fn: Callable[[int, int], torch.Tensor], *, seq_len: int, device=None,
            breaks: Sequence[int] = (), widths: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """``fn(start, stop)`` for consecutive slices of ``0..n``, concatenated along the first axis.

        The slices are the intervals between ``0``, ``n`` and the ``breaks`` inside ``(0, n)`` (indices where a new
        chunk must start: length buckets, see :func:`length_breaks`), each cut into pieces of
        :meth:`chunk_size` ``(seq_len, device)`` variants (the last piece of an interval may be shorter). With
        ``widths`` (the width of each variant, longest first within an interval, as length buckets sort them), an
        interval starting at ``lo`` is cut into pieces of ``chunk_size(widths[lo], device)``: shortened variants get
        the chunk of their own width. ``ValueError`` when ``n`` is 0."""
        chunk = self.chunk_size(seq_len, device)
        bounds = sorted({0, n, *(b for b in breaks if 0 < b < n)})
        if widths is not None and len(widths) != n:
            raise ValueError(f"widths has {len(widths)} entries for {n} variants")
        outs = []
        for lo, stop in zip(bounds[:-1], bounds[1:]):
            if widths is not None:
                chunk = self.chunk_size(max(int(widths[lo]), 1), device)
            for start in range(lo, stop, chunk):
                outs.append(fn(start, min(start + chunk, stop)))
                report_variants(min(start + chunk, stop) - start)
        if not outs:
            raise ValueError("no variants to run")
        return torch.cat(outs, dim=0)


_LISTENERS = threading.local()


@contextlib.contextmanager
def variant_listener(callback: Callable[[int], None]) -> Iterator[None]:
    """Within the body, ``callback(k)`` is called in this thread after every forward of ``k`` variants that a
    :class:`VariantRunner` (or :func:`report_variants`) runs in this thread: the live count of the work done, for
    progress displays. Listeners nest (each entered one is called); other threads are not seen."""
    stack = getattr(_LISTENERS, "stack", None)
    if stack is None:
        stack = _LISTENERS.stack = []
    stack.append(callback)
    try:
        yield
    finally:
        stack.remove(callback)


def report_variants(k: int) -> None:
    """Tell this thread's :func:`variant_listener` callbacks that ``k`` more variants went through the model (code
    that runs variants outside a :class:`VariantRunner` calls it)."""
    for callback in list(getattr(_LISTENERS, "stack", ())):
        callback(int(k))


def length_breaks(sorted_lengths: torch.Tensor, granularity: int = 8) -> list[int]:
    """Chunk boundaries for length bucketing: ``sorted_lengths`` (a CPU tensor, longest first) is cut wherever the
    length rounded up to a multiple of ``granularity`` changes, so each forward pads its rows to at most
    ``granularity − 1`` tokens more than they need."""
    if sorted_lengths.numel() == 0:
        return []
    key = (sorted_lengths + granularity - 1) // granularity
    return (torch.nonzero(key[1:] != key[:-1]).flatten() + 1).tolist()
