"""Result helpers: strict-JSON conversion (NaN/inf → None), number cells and markdown tables, atomic file writes,
concatenation of per-batch results.

What the evaluators' result classes (``to_dict``, ``to_markdown``, ``concat``) and the pipeline's ``results.json``
share:

* :func:`json_number`, :func:`json_numbers`, :func:`to_json_list`, :func:`clean_json`: numbers, tensors and nested
  containers as strict JSON (``json.dumps(..., allow_nan=False)`` accepts them): NaN and ±inf become None;
* :func:`fmt_number`, :func:`markdown_table`: the cells and tables of the ``to_markdown`` reports (and of the
  pipeline's and the replications' reports);
* :func:`atomic_write`: ``results.json`` and ``report.md`` written whole or not at all;
* :func:`pad_cat`: per-batch ``[B_i, T_i, ...]`` tensors joined along the rows, the token axis right-padded.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "json_number", "json_numbers", "to_json_list", "clean_json", "fmt_number", "markdown_table", "atomic_write",
    "pad_cat",
]


def json_number(x: Any) -> float | None:
    """``x`` as a float for JSON (a Python number, a NumPy or one-element tensor scalar); None for None, NaN or
    ±inf."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def json_numbers(t: torch.Tensor) -> list[float | None]:
    """The values of ``t``, flattened, as floats (float64 first) for JSON: NaN/inf → None."""
    return [json_number(v) for v in t.detach().double().cpu().reshape(-1).tolist()]


def clean_json(x: Any) -> Any:
    """``x`` as strict JSON data (``json.dumps(..., allow_nan=False)`` accepts it), recursively:

    * mappings → dicts with ``str`` keys; lists and tuples → lists;
    * tensors → ``tensor.tolist()`` (a number for a 0-d tensor), NumPy arrays → ``.tolist()``, NumPy scalars →
      ``.item()``, then cleaned in turn;
    * floats: NaN and ±inf → None, finite ones unchanged; ``None``, ``bool``, ``int`` and ``str`` unchanged;
    * anything else (a ``Path``...) → ``str(x)``.
    """
    if isinstance(x, Mapping):
        return {str(k): clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean_json(v) for v in x]
    if isinstance(x, torch.Tensor):
        return clean_json(x.detach().cpu().tolist())
    if isinstance(x, np.ndarray):
        return clean_json(x.tolist())
    if isinstance(x, np.generic):
        return clean_json(x.item())
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return str(x)


def to_json_list(t: torch.Tensor | None) -> Any:
    """A tensor as nested Python lists (a number for a 0-d tensor) with NaN/inf → None; None for None."""
    if t is None:
        return None
    return clean_json(t.detach().cpu().tolist())


def fmt_number(x: Any, digits: int = 3, none: str = "–") -> str:
    """A number as text: ``none`` for None, ints and bools as they are (``str``), anything ``float()`` takes with
    ``digits`` decimals (``"nan"`` for NaN and ±inf), anything else as ``str(x)``.

    A nonzero number too small for ``digits`` decimals (``0 < |x| < 10**-digits``, which would read ``0.000``) is
    written with two significant digits instead: ``0.00042``, ``4.2e-05``, ``-3.0e-08`` (Python's ``#.2g``)."""
    if x is None:
        return none
    if isinstance(x, (bool, int)):
        return str(x)
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(x):
        return "nan"
    x += 0.0  # -0.0 → 0.0
    if x != 0 and abs(x) < 10.0 ** -digits:
        return f"{x:#.2g}"
    return f"{x:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table; string cells are written as they are, others through :func:`fmt_number`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(v if isinstance(v, str) else fmt_number(v) for v in row) + " |")
    return "\n".join(lines)


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through ``path.tmp`` and ``os.replace``: a reader sees the old file or the
    whole new one, never a part."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def pad_cat(tensors: Sequence[torch.Tensor], fill: Any) -> torch.Tensor:
    """Concatenate ``[B_i, T_i, ...]`` tensors along rows, right-padding the token axis to the longest with
    ``fill``."""
    width = max(t.shape[1] for t in tensors)
    out = []
    for t in tensors:
        if t.shape[1] < width:
            pad = torch.full((t.shape[0], width - t.shape[1], *t.shape[2:]), fill, dtype=t.dtype, device=t.device)
            t = torch.cat([t, pad], dim=1)
        out.append(t)
    return torch.cat(out, dim=0)
