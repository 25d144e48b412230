"""Leave every model exactly as it was found."""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn

__all__ = ["model_guard"]


@contextlib.contextmanager
def model_guard(model: nn.Module, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the body and restore, also on an exception, every module's train/eval flag
    and every parameter's ``requires_grad``."""
    training = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        if eval_mode:
            model.eval()
        yield model
    finally:
        for m, flag in training:
            m.training = flag
        for p, flag in grads:
            if p.requires_grad != flag:
                p.requires_grad_(flag)
