"""Model state shared between threads: leave every model exactly as it was found, and keep each call's state to the
thread that made it.

* :func:`model_guard`: eval mode for the body; every train/eval flag and ``requires_grad`` restored after.
* :func:`share` / :func:`unshare`: reference-counted changes to a model (hooks, a config switch) shared by the
  concurrent users of one model: the first user makes the change, the last one to leave undoes it.
* :func:`claim` / :func:`owner` / :func:`release`: which object (an attention tap, a prefix cache) acts on a module in
  the calling thread. A shared hook asks :func:`owner` and does nothing where there is none, so a thread that claimed
  nothing runs the model unchanged. Per thread (``threading.local``), not per ``contextvars`` context: a claim made
  in one notebook cell holds in the next (ipykernel may run cells in different contexts).
* :func:`local_forward_hook`: a forward hook that only runs in the thread that registered it.
* :func:`shadow_forward`: a module's ``forward`` routed to a stand-in of the calling thread's owner (the prefix cache's
  skipped blocks, the readout forwards' last block), the module's own forward everywhere else.
"""

from __future__ import annotations

import contextlib
import threading
from functools import partial
from typing import Any, Callable, Hashable, Iterable, Iterator

from torch import nn

__all__ = ["LOCK", "model_guard", "share", "unshare", "claim", "owner", "release", "local_forward_hook",
           "shadow_forward"]

#: the lock every change to the shared state above (and a tap's activation) is made under
LOCK = threading.RLock()
# key -> [number of users, the function that undoes the change]
_SHARED: dict[Hashable, list] = {}


class _Claims(threading.local):
    """Per thread: (kind, id(object)) -> the object's owner."""

    def __init__(self) -> None:
        self.owners: dict[tuple[str, int], Any] = {}


_CLAIMS = _Claims()


def share(key: Hashable, install: Callable[[], Callable[[], None]]) -> None:
    """One more user of the change ``key``. The first user runs ``install()``, which makes the change and returns the
    function undoing it; later users only count. Pair every call with :func:`unshare`."""
    with LOCK:
        entry = _SHARED.get(key)
        if entry is None:
            _SHARED[key] = [1, install()]
        else:
            entry[0] += 1


def unshare(key: Hashable) -> None:
    """One user fewer of the change ``key``; the last one runs its undo function."""
    with LOCK:
        entry = _SHARED[key]
        entry[0] -= 1
        if entry[0] == 0:
            del _SHARED[key]
            entry[1]()


def claim(kind: str, objects: Iterable[object], who: object, clash: str) -> None:
    """Make ``who`` the owner of each of ``objects`` for ``kind`` in the calling thread (until :func:`release`).

    Raises ``RuntimeError(clash)`` (claiming nothing) when one of them already has an owner of that kind here."""
    owners = _CLAIMS.owners
    keys = [(kind, id(o)) for o in objects]
    if any(k in owners for k in keys):
        raise RuntimeError(clash)
    owners.update(dict.fromkeys(keys, who))


def owner(kind: str, obj: object) -> Any:
    """The owner of ``obj`` for ``kind`` in the calling thread, or None."""
    return _CLAIMS.owners.get((kind, id(obj)))


def release(kind: str, who: object) -> None:
    """Drop every claim of ``who`` for ``kind`` in the calling thread."""
    owners = _CLAIMS.owners
    for key in [k for k, v in owners.items() if k[0] == kind and v is who]:
        del owners[key]


@contextlib.contextmanager
def local_forward_hook(module: nn.Module, hook: Callable[..., Any]) -> Iterator[None]:
    """``module.register_forward_hook(hook)`` for the body, except that ``hook(module, args, output)`` only runs for
    forwards in the calling thread: the same module running in another thread meanwhile is untouched."""
    token = object()
    claim("local-hook", [token], token, "local_forward_hook: token already claimed")  # a new object: never

    def run(mod: nn.Module, args: Any, output: Any) -> Any:
        return hook(mod, args, output) if owner("local-hook", token) is token else None

    handle = module.register_forward_hook(run)
    try:
        yield
    finally:
        handle.remove()
        release("local-hook", token)


def shadow_forward(module: nn.Module, kind: str) -> Callable[[], None]:
    """Shadow ``module.forward`` (an instance attribute) with a dispatcher; returns the function undoing it (the
    ``install`` of :func:`share`).

    In a thread where an object owns ``module`` for ``kind`` (:func:`claim`), a call of the module runs
    ``owner.stand_in(original, *args, **kwargs)``, ``original`` being the forward it shadows; in every other thread
    the module's own forward, so another thread running the same model meanwhile computes it as usual."""
    previous = module.__dict__.get("forward")

    def original(*args: Any, **kwargs: Any) -> Any:
        if previous is not None:
            return previous(*args, **kwargs)
        return type(module).forward(module, *args, **kwargs)

    def forward(*args: Any, **kwargs: Any) -> Any:
        who = owner(kind, module)
        if who is not None:
            return who.stand_in(original, *args, **kwargs)
        return original(*args, **kwargs)

    module.forward = forward

    def undo() -> None:
        if previous is None:
            module.__dict__.pop("forward", None)
        else:
            module.forward = previous

    return undo


def _keep_training(m: nn.Module) -> Callable[[], None]:
    """Save ``m``'s train/eval flag; returns the function restoring it."""
    flag = m.training
    return partial(setattr, m, "training", flag)


def _keep_requires_grad(p: nn.Parameter) -> Callable[[], None]:
    """Save ``p.requires_grad``; returns the function restoring it."""
    flag = p.requires_grad

    def restore() -> None:
        if p.requires_grad != flag:
            p.requires_grad_(flag)

    return restore


@contextlib.contextmanager
def model_guard(model: nn.Module, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the body and restore, also on an exception, every module's train/eval flag
    and every parameter's ``requires_grad``.

    Concurrent guards (other threads, nested or overlapping models) share the saved state per module and per
    parameter: the first guard to reach one saves its flag, the last guard on it to leave restores it. So a guard
    leaving in one thread never puts the model back in training mode (or unfreezes parameters) under a guard still
    running in another, and the state restored is the one found before the first guard. A thread using the model
    without a guard meanwhile sees what the guards set (eval mode; parameters an attribution froze).
    """
    keys: list[Hashable] = []
    with LOCK:
        for m in model.modules():
            keys.append(("training", id(m)))
            share(keys[-1], partial(_keep_training, m))
        for p in model.parameters():
            keys.append(("requires_grad", id(p)))
            share(keys[-1], partial(_keep_requires_grad, p))
        if eval_mode:
            model.eval()
    try:
        yield model
    finally:
        with LOCK:
            for key in reversed(keys):
                unshare(key)
