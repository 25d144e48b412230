"""Progress: a run's own display with an ETA (:class:`RunProgress`), and the progress bars of the libraries attnfaith
calls switched off (:class:`suppress_progress_bars`, for ``--quiet`` and the demo's own output)."""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["suppress_progress_bars", "RunProgress"]


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


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


#: the share of the work counted before an ETA is shown
MIN_SHARE = 0.05


class RunProgress:
    """Progress of a run with an ETA, counted in *forwards* (variants of one example through the model).

    The run announces its estimated work up front (:meth:`announce`: forwards per stage, from the registry's cost
    estimates), then runs stages (:meth:`stage`: a method or an evaluator on one chunk, with its estimated
    forwards); inside a stage every forward the batching engine runs is counted live through
    :func:`attnfaith.engine.variant_listener` (at most the stage's estimate; when the stage ends the rest of its
    estimate is counted at once, as early-exiting tests finish below their bound). The ETA is the time per counted
    forward so far in this session times the forwards left.

    On a terminal one tqdm bar is redrawn; otherwise (logs) a plain line is printed at most every ``interval``
    seconds while work moves, plus one line per finished chunk, and after the first chunk the projected total time.
    """

    def __init__(self, total: float, n_chunks: int, n_examples: int, *, done_chunks: int = 0,
                 done_examples: int = 0, stream: Any = None, interval: float = 5.0, terminal: bool | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        import sys
        import time

        self.stream = sys.stderr if stream is None else stream
        self.clock = clock or time.perf_counter
        self.total = max(float(total), 1.0)
        self.n_chunks, self.n_examples = n_chunks, n_examples
        self.chunk, self.examples_done = done_chunks, done_examples
        # the resumed chunks' share counts as done, but not into the rate (it cost nothing in this session)
        self.resumed = self.total * (done_examples / n_examples) if n_examples else 0.0
        self.done = self.resumed
        self.interval = float(interval)
        self.t0 = self.clock()
        self.last_line = self.t0
        self.stage_name = ""
        self.stage_left = 0.0
        self.projected = False
        if terminal is None:
            try:
                terminal = bool(self.stream.isatty())
            except Exception:
                terminal = False
        self.bar = None
        if terminal:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=round(self.total), initial=round(self.done), unit="fwd", unit_scale=True,
                            dynamic_ncols=True, file=self.stream, desc="attnfaith")

    def _print(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def announce(self, estimates: dict[str, float]) -> None:
        """Print the estimate of the work before it starts: forwards in all and per stage."""
        parts = ", ".join(f"{name} {round(v):,}" for name, v in estimates.items() if v >= 1)
        self._print(f"attnfaith: {self.n_examples} examples in {self.n_chunks} chunk(s), about "
                    f"{round(sum(estimates.values())):,} forwards ({parts})")

    def eta(self) -> float | None:
        """Seconds left at this session's rate, or None before :data:`MIN_SHARE` of the work left at the start was
        counted (the first stages' rates say little about the rest)."""
        work = self.done - self.resumed
        elapsed = self.clock() - self.t0
        if work <= 0 or elapsed <= 0 or work < MIN_SHARE * (self.total - self.resumed):
            return None
        return (self.total - self.done) * elapsed / work

    def line(self) -> str:
        """The plain progress line (logs)."""
        eta = self.eta()
        return (f"attnfaith: {100 * self.done / self.total:.0f}% | chunk {min(self.chunk + 1, self.n_chunks)}/"
                f"{self.n_chunks} | {self.stage_name} | {self.examples_done}/{self.n_examples} examples done | "
                f"elapsed {_duration(self.clock() - self.t0)} | ETA {'?' if eta is None else _duration(eta)}")

    def _advance(self, k: float) -> None:
        k = min(float(k), self.stage_left)
        if k <= 0:
            return
        self.stage_left -= k
        self.done += k
        if self.bar is not None:
            self.bar.update(round(self.done) - self.bar.n)
        elif self.clock() - self.last_line >= self.interval:
            self.last_line = self.clock()
            self._print(self.line())

    def stage(self, name: str, estimate: float):
        """Context manager: the stage ``name`` (e.g. ``"evaluator erasure"``) of the current chunk, estimated at
        ``estimate`` forwards; forwards the engine runs inside are counted."""
        import contextlib

        from attnfaith.engine import variant_listener

        @contextlib.contextmanager
        def run():
            self.stage_name, self.stage_left = name, max(float(estimate), 0.0)
            if self.bar is not None:
                self.bar.set_description(f"chunk {self.chunk + 1}/{self.n_chunks} {name}", refresh=False)
            with variant_listener(self._advance):
                yield
            self._advance(self.stage_left)

        return run()

    def chunk_done(self, n_examples: int, seconds: float) -> None:
        """A chunk of ``n_examples`` finished in ``seconds``: a line in logs, the projection after the first."""
        self.chunk += 1
        self.examples_done += n_examples
        if self.bar is None:
            self.last_line = self.clock()
            self._print(f"attnfaith: chunk {self.chunk}/{self.n_chunks} done ({seconds:.1f} s): "
                        f"{self.examples_done}/{self.n_examples} examples")
        if not self.projected and self.chunk < self.n_chunks:
            eta = self.eta()
            if eta is not None:
                self.projected = True
                self._print(f"attnfaith: projected total {_duration(self.clock() - self.t0 + eta)} "
                            f"(about {_duration(eta)} left)")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
