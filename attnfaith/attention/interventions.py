"""Interventions on post-softmax attention probabilities.

Everything here is pure tensor code on a probability tensor ``p`` of shape ``[B, H, Tq, Tk]`` and a boolean
``allowed`` tensor broadcastable to it (True where query ``q`` may attend to key ``k``: a real, non-padding key that,
in a causal layer, is not in the future). The tap calls :func:`apply_interventions` for each attention layer it
reaches; rows, heads and layers an intervention does not select are returned bit-identical.

Kinds (each follows the paper named):

``"permute"`` (Jain & Wallace 2019, section 4.2)
    ``value``: LongTensor ``[B, Tk]`` or ``[B, H, Tk]``, a permutation of key positions per row (and head). The new
    weight on key ``k`` is the old weight on key ``value[..., k]``. Jain & Wallace permute the real tokens only:
    build permutations that are the identity on padding (:func:`real_key_permutation` does). In a causal layer,
    weight moved onto a key the query may not see is dropped and the row rescaled to its previous total (1), so no
    query ever sees the future.
``"zero"`` (Serrano & Smith 2019, sections 4 and 5)
    ``value``: BoolTensor ``[B, Tk]`` or ``[B, H, Tk]``, True on keys to erase. Their weight is set to 0 and every
    query row is renormalised to sum to 1 (``F.normalize(p=1)`` in Serrano & Smith's code). A row left with no
    weight stays all-zero.
``"replace"``
    ``value``: float tensor broadcastable to ``[B, H, Tq, Tk]``: the new attention weights, used as given (in a
    causal layer, a row that puts weight on keys the query may not see loses that weight and the rest of the row is
    rescaled to the row's given total; rows without such weight are used exactly as given).
``"uniform"`` (Wiegreffe & Pinter 2019, section 3.1)
    No value: each query row becomes uniform over the keys it is allowed to see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["Intervention", "apply_interventions", "real_key_permutation", "KINDS"]

KINDS = ("permute", "zero", "replace", "uniform")


@dataclass(frozen=True)
class Intervention:
    """One intervention: what to do (``kind``, ``value``) and where (``layers``, ``rows``, ``heads``).

    ``layers`` is a tuple of layer indices in the tap's call order (negative indices count from the end) or None
    for every layer; ``rows`` a BoolTensor ``[B]`` (None: every row); ``heads`` a tuple of head indices (None: every
    head).
    """

    kind: str
    value: torch.Tensor | None = None
    layers: tuple[int, ...] | None = None
    rows: torch.Tensor | None = None
    heads: tuple[int, ...] | None = None

    def applies_to(self, layer: int, num_layers: int | None) -> bool:
        if self.layers is None:
            return True
        for idx in self.layers:
            if idx == layer:
                return True
            if idx < 0 and num_layers is not None and idx + num_layers == layer:
                return True
        return False


def _renormalise(p: torch.Tensor) -> torch.Tensor:
    total = p.sum(dim=-1, keepdim=True)
    return torch.where(total > 0, p / torch.where(total > 0, total, torch.ones_like(total)), p)


def _drop_disallowed(new: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Zero the weights ``new`` puts on keys a query may not see and rescale the rest of that row to the row's
    previous total. A row with no weight on a disallowed key is returned exactly as it was (so ``replace`` keeps its
    values as given, and finite differences through it are not distorted by a renormalisation)."""
    kept = new * allowed
    total = new.sum(dim=-1, keepdim=True)
    kept_total = kept.sum(dim=-1, keepdim=True)
    lost = kept_total != total
    scale = torch.where(lost & (kept_total != 0), total / torch.where(kept_total != 0, kept_total, 1.0), 1.0)
    return torch.where(lost, kept * scale, new)


def _key_tensor(value: torch.Tensor, p: torch.Tensor, name: str) -> torch.Tensor:
    """Bring a per-key ``[B, Tk]`` / ``[B, H, Tk]`` tensor to ``[B, H|1, 1, Tk]``."""
    B, H, _, Tk = p.shape
    if value.dim() == 2:
        value = value[:, None, None, :]
    elif value.dim() == 3:
        value = value[:, :, None, :]
    else:
        raise ValueError(f"{name} intervention value must be [B, Tk] or [B, H, Tk], got shape {tuple(value.shape)}")
    if value.shape[0] != B or value.shape[-1] != Tk or value.shape[1] not in (1, H):
        raise ValueError(
            f"{name} intervention value has shape {tuple(value.shape)} but the attention is [B={B}, H={H}, Tq, Tk={Tk}]"
        )
    return value.to(p.device)


def _apply_one(
    p: torch.Tensor, allowed: torch.Tensor, iv: Intervention, causal: bool
) -> torch.Tensor:
    B, H, Tq, Tk = p.shape
    if iv.kind == "permute":
        idx = _key_tensor(iv.value, p, "permute")
        if idx.dtype not in (torch.int64, torch.int32):
            raise TypeError("permute intervention value must be an integer tensor of key positions")
        idx = idx.long().expand(B, H, Tq, Tk)
        new = p.gather(-1, idx)
        if causal:
            new = _drop_disallowed(new, allowed)
    elif iv.kind == "zero":
        z = _key_tensor(iv.value, p, "zero")
        if z.dtype != torch.bool:
            raise TypeError("zero intervention value must be a boolean tensor (True = erase that key)")
        new = _renormalise(p.masked_fill(z, 0.0))
    elif iv.kind == "replace":
        new = iv.value.to(device=p.device, dtype=p.dtype)
        try:
            new = new.expand(B, H, Tq, Tk)
        except RuntimeError as exc:
            raise ValueError(
                f"replace intervention value of shape {tuple(iv.value.shape)} does not broadcast to the attention "
                f"shape {(B, H, Tq, Tk)}"
            ) from exc
        if causal:
            new = _drop_disallowed(new, allowed)
    elif iv.kind == "uniform":
        a = allowed.to(p.dtype).expand(B, H, Tq, Tk)
        n = a.sum(dim=-1, keepdim=True)
        new = torch.where(n > 0, a / n.clamp_min(1), p)
    else:  # pragma: no cover - validated on construction
        raise ValueError(f"unknown intervention kind {iv.kind!r}")

    sel = torch.ones(B, H, 1, 1, dtype=torch.bool, device=p.device)
    if iv.rows is not None:
        sel = sel & iv.rows.to(device=p.device, dtype=torch.bool)[:, None, None, None]
    if iv.heads is not None:
        hm = torch.zeros(H, dtype=torch.bool, device=p.device)
        hm[list(iv.heads)] = True
        sel = sel & hm[None, :, None, None]
    return torch.where(sel, new, p)


def apply_interventions(
    p: torch.Tensor,
    allowed: torch.Tensor,
    interventions: Sequence[Intervention],
    layer: int,
    num_layers: int | None,
    causal: bool = False,
) -> torch.Tensor:
    """Apply, in order, every intervention of ``interventions`` that selects ``layer`` to ``p`` ``[B, H, Tq, Tk]``."""
    for iv in interventions:
        if iv.applies_to(layer, num_layers):
            if iv.rows is not None and iv.rows.shape[0] != p.shape[0]:
                raise ValueError(
                    f"intervention rows has {iv.rows.shape[0]} entries but the forward has batch size {p.shape[0]}"
                )
            if iv.heads is not None and (max(iv.heads) >= p.shape[1] or min(iv.heads) < -p.shape[1]):
                raise ValueError(f"heads {iv.heads} out of range for a layer with {p.shape[1]} heads")
            p = _apply_one(p, allowed, iv, causal)
    return p


def real_key_permutation(
    key_mask: torch.Tensor, n: int = 1, generator: torch.Generator | Sequence[torch.Generator] | None = None,
    heads: int | None = None
) -> torch.Tensor:
    """Random permutations of the real keys of each row, the identity on the others.

    ``key_mask``: BoolTensor ``[B, Tk]`` (True on keys to shuffle). Returns LongTensor ``[B, n, Tk]`` (or
    ``[B, n, heads, Tk]``) for the ``"permute"`` intervention: ``perm[b, i, k]`` is the key whose weight moves to
    ``k``. Drawn on the CPU, then moved to ``key_mask``'s device. ``generator``: one CPU generator per row (a list,
    e.g. :func:`attnfaith.seeding.example_generators`; row ``b`` draws ``torch.rand(n, [heads,] k_b)`` for its ``k_b``
    real keys, :func:`attnfaith.seeding.rand_at`, so its permutations depend on its own keys and generator only,
    not on its batch-mates, the padding or the device), or one generator (or None) drawing ``[B, n, [heads,] Tk]``
    for the whole batch. The permutation of a row sorts its real keys by these draws. As Jain & Wallace's
    ``np.random.permutation(L-2)+1``, only real positions move.
    """
    km = key_mask.detach().to("cpu", torch.bool)
    B, Tk = km.shape
    shape = (B, n) + ((heads,) if heads is not None else ()) + (Tk,)
    if isinstance(generator, (list, tuple)):
        from attnfaith.seeding import rand_at

        noise = rand_at(km, generator, lead=shape[1:-1])
    else:
        noise = torch.rand(shape, generator=generator)
    # real keys get random sort keys in [0, 1); the others keep their own position as a sort key offset past 1 so
    # they sort after the real ones, then we scatter the sorted real positions back into the real slots
    pos = torch.arange(Tk).expand(shape)
    kmb = km.view(B, *([1] * (len(shape) - 2)), Tk).expand(shape)
    order = torch.sort(torch.where(kmb, noise, 2.0 + pos.float()), dim=-1, stable=True).indices
    # order[..., :n_real] is a random order of the real positions; place them into the real slots in position order
    slots = torch.sort(torch.where(kmb, pos.float(), 2.0 * Tk + pos.float()), dim=-1, stable=True).indices
    perm = pos.clone()
    perm.scatter_(-1, slots, order)
    return perm.to(key_mask.device)
