"""The base of every evaluator's result: per-example tensors that join, serialise and split into records generically.

A result is a dataclass whose fields are either **per-example** (one entry per example along axis 0; listed, with
their layout, in :attr:`Result.layout`), **summed** over batches (:attr:`Result.summed`, e.g. a 2×2 count table) or
**metadata** (every other field: the layer, the method's name...). Layouts:

``"row"``
    ``[B, ...]``: nothing but the example axis is special (``[B]`` values, ``[B, C]`` probabilities,
    ``[B, n]`` per-permutation values).
``"token"``
    ``[B, T, ...]``: axis 1 is the token axis. Batches are joined right-padded (:func:`attnfaith.results.pad_cat`;
    :meth:`Result.fill`); a record keeps the example's items (``items[b]``).
``"key"``
    ``[B, ..., T]``: the last axis is the token axis (attention over keys, permutations of keys). Joined and cut
    like ``"token"`` along that axis.
``"step"``
    ``[B, T+1, ...]``: axis 1 counts removals ``0..T``. Padded with NaN; a record keeps steps ``0..n_items[b]``.

A field may also hold a list of such tensors (one per random order, say): they are joined element-wise and
recorded as a list. :attr:`Result.positions` names fields whose values are token positions: a record gives the
index among the example's items instead (None for a position that is not an item, or −1).

Per example ``b``, ``items[b]`` is the ``items`` field (BoolTensor ``[B, T]``) when the result has one, and
``n_items[b] = items[b].sum()``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Iterable, Mapping, TypeVar

import torch

from attnfaith.results import clean_json, fmt_number, pad_cat, to_json_list

__all__ = ["Result", "bins_markdown"]

R = TypeVar("R", bound="Result")

_LAYOUTS = ("row", "token", "key", "step")


class Result:
    """Base class of the evaluators' result dataclasses.

    Subclasses declare :attr:`layout` (per-example field → ``"row"``, ``"token"``, ``"key"`` or ``"step"``; see
    :mod:`attnfaith.evaluators.result`), optionally :attr:`summed` and :attr:`positions`, and implement
    :meth:`summary` (and :meth:`to_markdown`). Everything else is generic:

    * ``len(result)``: the number of examples;
    * :meth:`to_dict`: ``{"summary": ..., <metadata fields>..., <per-example and summed fields>...}``, every tensor as
      nested lists, NaN/inf → None (strict JSON);
    * :meth:`concat`: one result from several batches' results (rows joined, token axes right-padded, summed fields
      added, metadata from the first);
    * :meth:`records`: one JSON-safe dict per example (see the module docstring).
    """

    #: per-example field → layout (``"row"``, ``"token"``, ``"key"``, ``"step"``)
    layout: ClassVar[Mapping[str, str]] = {}
    #: fields added up by :meth:`concat` (counts over the examples)
    summed: ClassVar[tuple[str, ...]] = ()
    #: per-example fields holding token positions (records give item indices)
    positions: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        bad = {k: v for k, v in cls.layout.items() if v not in _LAYOUTS}
        if bad:
            raise TypeError(f"{cls.__name__}.layout: unknown layout(s) {bad}; expected one of {_LAYOUTS}")

    # ------------------------------------------------------------------------------------------------ subclasses
    def summary(self) -> dict[Any, Any]:
        """The result's summary over its examples (each subclass defines its statistics)."""
        raise NotImplementedError

    def to_markdown(self) -> str:
        """The summary as a markdown table."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.to_markdown()

    # ------------------------------------------------------------------------------------------------ generic
    @classmethod
    def metadata_fields(cls) -> list[str]:
        """The dataclass fields that are neither per-example nor summed."""
        return [f.name for f in dataclasses.fields(cls) if f.name not in cls.layout and f.name not in cls.summed]

    def __len__(self) -> int:
        for name in self.layout:
            value = getattr(self, name)
            if isinstance(value, torch.Tensor):
                return int(value.shape[0])
            if isinstance(value, list) and value:
                return int(value[0].shape[0])
        return 0

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON dict: ``"summary"``, then every metadata field, then every per-example and summed field
        (tensors as nested lists; lists of tensors as lists of them; NaN/inf → None)."""
        out: dict[str, Any] = {"summary": clean_json(self.summary())}
        for name in self.metadata_fields():
            out[name] = clean_json(getattr(self, name))
        for name in (*self.layout, *self.summed):
            out[name] = _json(getattr(self, name))
        return out

    @classmethod
    def fill(cls, name: str, value: torch.Tensor) -> Any:
        """The value that right-pads field ``name`` when batches are joined: NaN for ``"step"`` fields, else
        False / 0 / 0.0 by dtype."""
        if cls.layout.get(name) == "step":
            return float("nan")
        if value.dtype == torch.bool:
            return False
        return 0.0 if value.is_floating_point() else 0

    @classmethod
    def join(cls, name: str, values: list[torch.Tensor]) -> torch.Tensor:
        """Field ``name`` of several batches joined along the examples (token axes right-padded with
        :meth:`fill`)."""
        kind = cls.layout.get(name, "row")
        if kind in ("token", "step"):
            return pad_cat(values, cls.fill(name, values[0]))
        if kind == "key":
            moved = [v.movedim(-1, 1) for v in values]
            return pad_cat(moved, cls.fill(name, values[0])).movedim(1, -1)
        return torch.cat(values)

    @classmethod
    def concat(cls: type[R], results: Iterable[R]) -> R:
        """One result from several batches' results of the same evaluator and settings (see the class docstring)."""
        results = list(results)
        if not results:
            raise ValueError("results: nothing to concatenate")
        if not all(type(r) is cls for r in results):
            raise TypeError(f"results: every result must be a {cls.__name__}")
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            values = [getattr(r, f.name) for r in results]
            if f.name in cls.summed:
                kwargs[f.name] = torch.stack(values).sum(0)
            elif f.name not in cls.layout or all(v is None for v in values):
                kwargs[f.name] = values[0]
            elif any(v is None for v in values):
                raise ValueError(f"results: field {f.name!r} is None in some results only")
            elif isinstance(values[0], list):
                kwargs[f.name] = [cls.join(f.name, [v[i] for v in values]) for i in range(len(values[0]))]
            else:
                kwargs[f.name] = cls.join(f.name, values)
        return cls(**kwargs)

    def records(self, fields: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """One strict-JSON dict per example: every per-example field of that example (``"token"``/``"key"``
        fields cut to its items, ``"step"`` fields to steps ``0..n_items``, :attr:`positions` as item indices;
        the ``items`` mask itself left out). ``fields``: only these per-example fields (None: all of them)."""
        items = getattr(self, "items", None)
        items = items.detach().cpu() if isinstance(items, torch.Tensor) else None
        chosen = set(self.layout) if fields is None else set(fields)
        unknown = chosen - set(self.layout)
        if unknown:
            raise KeyError(f"{type(self).__name__}.records: no per-example field(s) {sorted(unknown)}")
        values = {name: getattr(self, name) for name in self.layout if name != "items" and name in chosen}
        values = {k: ([t.detach().cpu() for t in v] if isinstance(v, list) else v.detach().cpu())
                  for k, v in values.items() if v is not None}
        out = []
        for b in range(len(self)):
            keep = items[b] if items is not None else None
            rec: dict[str, Any] = {}
            for name, value in values.items():
                if isinstance(value, list):
                    rec[name] = [self._cut(name, t[b], keep) for t in value]
                else:
                    rec[name] = self._cut(name, value[b], keep)
            out.append(rec)
        return out

    def _cut(self, name: str, row: torch.Tensor, keep: torch.Tensor | None) -> Any:
        """Example ``row`` of field ``name`` as JSON, cut to the example's items."""
        kind = self.layout[name]
        if keep is not None:
            if kind == "token" and row.dim() >= 1 and row.shape[0] == keep.shape[0]:
                row = row[keep]
            elif kind == "key" and row.dim() >= 1 and row.shape[-1] == keep.shape[0]:
                row = row[..., keep]
            elif kind == "step":
                row = row[: int(keep.sum()) + 1]
            if name in self.positions:
                index = torch.cumsum(keep.long(), 0) - 1  # position → index among the items
                valid = (row >= 0) & (row < keep.shape[0])
                safe = row.clamp(0, keep.shape[0] - 1)
                mapped = torch.where(valid & keep[safe], index[safe], torch.full_like(row, -1))
                listed = mapped.tolist()
                return _none_for_negative(listed)
        return to_json_list(row)


def bins_markdown(title: str, summary: Mapping[str, Mapping[str, Any]], name: str) -> str:
    """A :func:`attnfaith.metrics.bin_summary` as markdown under ``title``: one row per bin with its n and the mean
    and median of ``name``."""
    rows = [title, "", f"| max attention | n | mean {name} | median {name} |", "|---|---|---|---|"]
    for label, s in summary.items():
        rows.append(f"| {label} | {s['n']} | {fmt_number(s[f'{name}_mean'])} | {fmt_number(s[f'{name}_median'])} |")
    return "\n".join(rows)


def _json(value: Any) -> Any:
    if isinstance(value, list):
        return [to_json_list(v) for v in value]
    return to_json_list(value) if isinstance(value, torch.Tensor) or value is None else clean_json(value)


def _none_for_negative(x: Any) -> Any:
    if isinstance(x, list):
        return [_none_for_negative(v) for v in x]
    return None if x < 0 else x
