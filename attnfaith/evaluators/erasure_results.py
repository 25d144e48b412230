"""The results of decision-flip erasure (:class:`attnfaith.ErasureFlip`, Serrano & Smith 2019 §5): one ranking's
per-example numbers (:class:`ErasureResult`) and several rankings on the same inputs (:class:`ErasureComparison`).
The definitions of every field are in :mod:`attnfaith.evaluators.erasure`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch

from attnfaith.evaluators.result import Result
from attnfaith.results import markdown_table

__all__ = ["ErasureResult", "ErasureComparison"]

_TABLE_HEADER = ("ranking", "mean fraction removed", "never flipped", "mean AOPC", "examples", "orders")


def _table_row(name: str, s: Mapping[str, Any]) -> list[Any]:
    """One ranking's row of the markdown table, from its :meth:`ErasureResult.summary`."""
    return [name, s["mean_fraction_removed"], s["never_flipped"], s["mean_aopc"], s["n_examples"], s["n_orders"]]


@dataclass
class ErasureResult(Result):
    """Decision-flip erasure of one ranking (see the module docstring for the exact definitions).

    Per-example tensors (``B`` examples, ``T`` tokens, ``R`` orders: 1, or ``n_random`` for the random ranking):

    Attributes:
        method: the ranking's label.
        level: ``"attention"`` or ``"token"``; ``erase``: ``"delete"``/``"mask"``/an id for the token level.
        n_items: ``[B]`` items per example.
        prediction: ``[B]`` originally predicted class.
        n_removed: ``[B]`` float, removals until the decision first changed; NaN where it never did.
        fraction_removed: ``[B]`` ``n_removed / n_items``.
        flipped: ``[B]`` bool.
        curve: ``[B, T+1]`` probability of ``prediction`` after k removals (NaN past ``n_items``).
        aopc: ``[B]`` area over the perturbation curve.
        scores: ``[B, T]`` the ranking scores (the attributions; None for the random ranking, whose orders'
            scores are in ``order_scores``).
        items: ``[B, T]`` bool, the positions that were ranked and removed.
        input_ids: ``[B, T]`` the inputs (for visualisation).
        n_removed_per_order: ``[B, R]`` float (NaN: that order never flipped).
        aopc_per_order: ``[B, R]``.
        order_scores: the ``R`` score tensors ``[B, T]`` of the orders.
        steps: the fixed fractions of the curve points (None: every item).
    """

    layout: ClassVar[dict[str, str]] = {
        "n_items": "row", "prediction": "row", "n_removed": "row", "fraction_removed": "row", "flipped": "row",
        "curve": "step", "aopc": "row", "scores": "token", "items": "token", "input_ids": "token",
        "n_removed_per_order": "row", "aopc_per_order": "row", "order_scores": "token",
    }

    method: str
    level: str
    erase: Any
    n_items: torch.Tensor
    prediction: torch.Tensor
    n_removed: torch.Tensor
    fraction_removed: torch.Tensor
    flipped: torch.Tensor
    curve: torch.Tensor
    aopc: torch.Tensor
    scores: torch.Tensor | None
    items: torch.Tensor
    input_ids: torch.Tensor
    n_removed_per_order: torch.Tensor
    aopc_per_order: torch.Tensor
    order_scores: list[torch.Tensor] = field(default_factory=list, repr=False)
    steps: tuple[float, ...] | None = None

    @property
    def n_orders(self) -> int:
        return int(self.n_removed_per_order.shape[1])

    @property
    def probability(self) -> torch.Tensor:
        """``[B]`` original probability of the predicted class (``curve[:, 0]``)."""
        return self.curve[:, 0]

    def summary(self) -> dict[str, Any]:
        """Means over ``(example, order)`` pairs (one order for a fixed ranking; see the module docstring):

        ``mean_fraction_removed`` / ``mean_n_removed`` over the pairs that flipped (NaN if none),
        ``never_flipped``: share of pairs whose decision never changed, ``mean_aopc``.
        """
        nr = self.n_removed_per_order.detach().double().cpu()
        n = self.n_items.detach().double().cpu()[:, None].expand_as(nr)
        flipped = ~torch.isnan(nr)
        frac = nr / n
        pairs = nr.numel()
        return {
            "method": self.method,
            "level": self.level,
            "erase": self.erase if self.level == "token" else None,
            "n_examples": len(self),
            "n_orders": self.n_orders,
            "mean_fraction_removed": float(frac[flipped].mean()) if flipped.any() else float("nan"),
            "mean_n_removed": float(nr[flipped].mean()) if flipped.any() else float("nan"),
            "never_flipped": float((~flipped).double().mean()) if pairs else float("nan"),
            "mean_aopc": float(self.aopc_per_order.detach().double().cpu().mean()) if pairs else float("nan"),
        }

    def to_markdown(self) -> str:
        s = self.summary()
        title = f"ErasureFlip ({s['level']}{'' if s['level'] == 'attention' else ', erase=' + str(s['erase'])})"
        table = markdown_table(_TABLE_HEADER, [_table_row(s["method"], s)])
        return f"**{title}**\n\n{table}"


@dataclass
class ErasureComparison:
    """Several rankings on the same inputs: ``results`` (name → :class:`ErasureResult`) and one table."""

    results: dict[str, ErasureResult]

    @property
    def table(self) -> dict[str, dict[str, Any]]:
        """name → the ranking's :meth:`ErasureResult.summary`."""
        return {name: r.summary() for name, r in self.results.items()}

    def __getitem__(self, name: str) -> ErasureResult:
        return self.results[name]

    def summary(self) -> dict[str, dict[str, Any]]:
        return self.table

    def to_dict(self) -> dict[str, Any]:
        """name → the ranking's :meth:`ErasureResult.to_dict`."""
        return {name: r.to_dict() for name, r in self.results.items()}

    def to_markdown(self) -> str:
        return markdown_table(_TABLE_HEADER, [_table_row(name, s) for name, s in self.table.items()])

    def __str__(self) -> str:
        return self.to_markdown()
