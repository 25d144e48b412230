"""Progress bars of the libraries attnfaith calls (for ``--quiet`` and the demo's own output)."""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["suppress_progress_bars"]


class suppress_progress_bars:
    """Within the body, no progress bars of ``huggingface_hub`` (downloads, ``save_pretrained`` shards) and of
    ``transformers`` (loading weights).

    On entry each library whose bars are on is switched off; on exit exactly those are switched on again (a library
    whose bars were already off stays off). A library that is missing or lacks these switches is left alone.
    """

    def __enter__(self) -> "suppress_progress_bars":
        self._undo: list[Callable[[], Any]] = []
        try:
            from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

            if not are_progress_bars_disabled():
                disable_progress_bars()
                self._undo.append(enable_progress_bars)
        except Exception:  # pragma: no cover
            pass
        try:
            from transformers.utils import logging as tlog

            if tlog.is_progress_bar_enabled():
                tlog.disable_progress_bar()
                self._undo.append(tlog.enable_progress_bar)
        except Exception:  # pragma: no cover
            pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for undo in self._undo:
            undo()
