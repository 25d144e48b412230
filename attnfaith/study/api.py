"""The one-call Python API: benchmark attribution methods on a model and texts (``attnfaith.evaluate``), and the
results of a run, in memory or read back from its folder (``attnfaith.load_results``).

:func:`evaluate` is :func:`attnfaith.study.run_evaluation` (the path ``attnfaith evaluate`` takes: the same checks,
numbers and ``results.json``) with an output folder that is optional: without ``out_dir`` the run happens in a
temporary folder that is removed afterwards, and only the returned :class:`StudyResults` remains.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from attnfaith.study import report as reporting
from attnfaith.study.redraw import read_results
from attnfaith.study.runner import run_evaluation

__all__ = ["StudyResults", "evaluate", "load_results"]


class StudyResults(dict):
    """The content of a run's ``results.json`` (a plain ``dict``: ``["summary"]``, ``["examples"]``,
    ``["config"]``...), with ``out_dir`` (the folder it was written to, or None) and:

    * :meth:`table`: the method × metric table the command line prints;
    * :meth:`to_markdown`: ``report.md``'s text;
    * :attr:`verdicts`: ``{method: verdict sentence}``.
    """

    def __init__(self, run: dict[str, Any], out_dir: str | os.PathLike | None = None) -> None:
        super().__init__(run)
        self.out_dir = None if out_dir is None else Path(out_dir)

    def table(self) -> str:
        """The method × metric table (markdown) with 95 % bootstrap intervals."""
        return reporting.summary_table(self)

    def to_markdown(self) -> str:
        """The text of ``report.md`` (figures linked only when the run drew them)."""
        return reporting.render_markdown(self)

    @property
    def verdicts(self) -> dict[str, str]:
        """One sentence per method: how faithful it is by each evaluator's test."""
        return dict(self["summary"]["verdicts"])


def evaluate(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int] | None = None,
    *,
    methods: Sequence[str] | str | None = None,
    evaluators: Sequence[str] | str | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
    **options: Any,
) -> StudyResults:
    """Evaluate attribution ``methods`` with faithfulness ``evaluators`` on ``model`` and ``texts``.

    Args:
        model, tokenizer: a sequence classifier and its tokenizer (as :func:`attnfaith.study.run_evaluation`).
        texts, labels: the texts and optional gold class indices.
        methods, evaluators: registered names or a comma-separated string (None: the defaults of
            ``attnfaith evaluate``).
        out_dir: the folder for ``results.json``, ``report.md``, ``figures/`` and ``partial.jsonl`` (resume with
            ``resume=True``); None: nothing is kept on disk (no report or figures are drawn).
        progress: progress bars on stderr.
        options: every other keyword of :func:`attnfaith.study.run_evaluation` (``rationales``, ``config``,
            ``resume``, ``overwrite``, ``figures``...) or field of :class:`attnfaith.study.EvaluationConfig`
            (``layer``, ``batch_size``, ``seed``, ``max_length``, ``permutations``...).

    Returns:
        :class:`StudyResults`: what ``attnfaith evaluate`` writes to ``results.json``.
    """
    if out_dir is not None:
        run = run_evaluation(model, tokenizer, texts, labels, methods, evaluators, out_dir, progress=progress,
                             **options)
        return StudyResults(run, out_dir)
    for name in ("report", "figures", "resume", "overwrite"):
        if options.get(name):
            raise ValueError(f"{name}=True needs out_dir= (without it nothing is kept on disk)")
        options.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="attnfaith-") as tmp:
        run = run_evaluation(model, tokenizer, texts, labels, methods, evaluators, Path(tmp) / "run",
                             progress=progress, report=False, figures=False, **options)
    return StudyResults(run)


def load_results(out_dir: str | os.PathLike) -> StudyResults:
    """The :class:`StudyResults` of the finished run in ``out_dir`` (its ``results.json``)."""
    path = Path(out_dir)
    return StudyResults(read_results(path), path if path.is_dir() else path.parent)
