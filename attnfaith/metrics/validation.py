"""Argument checks shared by the metric functions: each raises ``TypeError`` / ``ValueError`` naming the argument."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["require_tensor", "require_real", "require_rows", "as_bool_mask"]


def require_tensor(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}")
    return x


def require_real(x: Tensor, name: str) -> None:
    """Real-valued (bool, integer or floating; not complex)."""
    if x.is_complex():
        raise TypeError(f"`{name}` must be real-valued, got complex dtype {x.dtype}")


def require_rows(x: Tensor, name: str) -> None:
    if x.dim() not in (1, 2):
        raise ValueError(
            f"`{name}` must have shape [B, T] or [T], got {tuple(x.shape)}"
        )


def as_bool_mask(mask: Tensor | None, like: Tensor, name: str = "mask") -> Tensor:
    """Validate ``mask`` against ``like`` and return it as a bool tensor.

    ``None`` becomes an all-True mask.  ``bool`` masks pass through; integer
    masks must hold only 0/1 and are converted.  Anything else (float, complex)
    is a ``TypeError``; a shape other than ``like.shape`` is a ``ValueError``.
    """
    if mask is None:
        return torch.ones(like.shape, dtype=torch.bool, device=like.device)
    require_tensor(mask, name)
    if tuple(mask.shape) != tuple(like.shape):
        raise ValueError(
            f"`{name}` must have the same shape as the scores {tuple(like.shape)}, "
            f"got {tuple(mask.shape)}"
        )
    if mask.dtype == torch.bool:
        return mask
    if mask.is_floating_point() or mask.is_complex():
        raise TypeError(
            f"`{name}` must be a bool tensor (or an integer 0/1 tensor), "
            f"got dtype {mask.dtype}"
        )
    if mask.numel() and bool(((mask != 0) & (mask != 1)).any()):
        raise ValueError(f"integer `{name}` must contain only 0 and 1")
    return mask != 0
