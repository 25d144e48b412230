"""The report of a finished run, drawn again from its ``results.json`` without running a model
(``attnfaith report DIR``): after an upgrade of attnfaith's report or figures, or to add the figures of a run made
with ``--no-figures``.

The per-example records are read as they are; the summary (bootstrap intervals, verdicts), ``report.md`` and
``figures/`` are computed from them again by the same writers a run uses (:func:`attnfaith.study.report.summarise`,
:func:`~attnfaith.study.report.render_markdown`, :func:`attnfaith.study.plots.make_figures`), and ``results.json``
is rewritten with the new summary and figure list (its records unchanged), so the three agree.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from attnfaith.results import atomic_write, clean_json
from attnfaith.study import report as reporting
from attnfaith.study import state
from attnfaith.study.config import PipelineError

__all__ = ["read_results", "redraw_report"]


def read_results(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``results.json`` of the run in ``out_dir`` (a folder, or the file itself), as a dict.

    ``PipelineError`` when there is none (naming an unfinished run's ``partial.jsonl``: ``--resume`` finishes it),
    or it is not an attnfaith results file."""
    path = Path(out_dir)
    if path.is_dir():
        path = path / state.RESULTS_FILE
    if not path.is_file():
        folder = path.parent
        hint = (f"; the run there is not finished ({state.STATE_FILE}): finish it with 'attnfaith evaluate ... "
                "--resume'") if (folder / state.STATE_FILE).is_file() else ""
        raise PipelineError(f"{folder}: no {state.RESULTS_FILE}{hint}")
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path}: not readable as JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(run, dict) or not str(run.get("format", "")).startswith("attnfaith.results/") \
            or "examples" not in run:
        raise PipelineError(f"{path}: not an attnfaith results file (no format 'attnfaith.results/...' and examples)")
    return run


def redraw_report(out_dir: str | os.PathLike, *, figures: bool = True) -> dict[str, Any]:
    """Recompute the summary of the run in ``out_dir`` from its records and write ``report.md``, ``figures/``
    (unless ``figures=False``: the figure list is then kept only for figures whose files exist) and
    ``results.json`` again. Holds the folder's lock (:func:`attnfaith.study.state.lock_out_dir`) meanwhile.
    Returns the new ``results.json`` content."""
    out = Path(out_dir)
    run = read_results(out)
    with state.lock_out_dir(out):
        run["summary"] = reporting.summarise(run)
        if figures:
            t0 = time.perf_counter()
            try:
                from attnfaith.study import plots

                run["figures"] = plots.make_figures(run, out / "figures")
            except ImportError as exc:
                raise PipelineError(f"figures need matplotlib: {exc} (pip install 'attnfaith[plot]'; or --no-figures)"
                                    ) from None
            run.setdefault("timings", {})["figures_seconds"] = round(time.perf_counter() - t0, 3)
        else:
            run["figures"] = {k: v for k, v in (run.get("figures") or {}).items()
                              if isinstance(v, dict) and (out / str(v.get("path", ""))).is_file()}
        run = clean_json(run)
        atomic_write(out / state.RESULTS_FILE, json.dumps(run, indent=1, allow_nan=False))
        atomic_write(out / "report.md", reporting.render_markdown(run))
    return run
