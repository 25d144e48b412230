"""Result helpers: strict-JSON conversion (NaN/inf → None), markdown tables, concatenation of per-batch results.

What the evaluators' result classes (``to_dict``, ``to_markdown``, ``concat``) and the pipeline's ``results.json``
share:

* :func:`json_number`, :func:`json_numbers`, :func:`to_json_list`, :func:`clean_json`: numbers, tensors and nested
  containers as strict JSON (``json.dumps(..., allow_nan=False)`` accepts them): NaN and ±inf become None;
* :func:`fmt_number`, :func:`markdown_table`: the cells and tables of the ``to_markdown`` reports;
* :func:`pad_cat`: per-batch ``[B_i, T_i, ...]`` tensors joined along the rows, the token axis right-padded.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import torch

__all__ = ["json_number", "json_numbers", "to_json_list", "clean_json", "fmt_number", "markdown_table", "pad_cat"]


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
    """``x`` with NaN/inf floats → None, recursively through dicts (keys made ``str``), lists and tuples (made
    lists); anything else unchanged."""
    if isinstance(x, dict):
        return {str(k): clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean_json(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def to_json_list(t: torch.Tensor | None) -> Any:
    """A tensor as nested Python lists (a number for a 0-d tensor) with NaN/inf → None; None for None."""
    if t is None:
        return None
    return clean_json(t.detach().cpu().tolist())


def fmt_number(x: Any, digits: int = 3) -> str:
    """A table cell: ``"–"`` for None, ints and bools as they are, floats with ``digits`` decimals (``"nan"`` for
    NaN/inf)."""
    if x is None:
        return "–"
    if isinstance(x, (bool, int)):
        return str(x)
    x = float(x)
    return "nan" if not math.isfinite(x) else f"{x:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table; string cells are written as they are, others through :func:`fmt_number`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(v if isinstance(v, str) else fmt_number(v) for v in row) + " |")
    return "\n".join(lines)


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
