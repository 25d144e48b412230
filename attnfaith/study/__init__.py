"""A study: model + texts → attribution methods → evaluators → per-example records → summary → report and figures.

One path for ``attnfaith evaluate``, ``attnfaith demo`` and the Python API (:func:`run_evaluation`, also
``attnfaith.evaluate``):

==================  ============================================================================================
``config``          :class:`EvaluationConfig` (what determines the numbers), :class:`PipelineError`
``registry``        the methods and evaluators (:func:`register_method`, :func:`register_evaluator`) and what the
                    report and the figures show of each
``builtin/``        the built-in registrations, one module per evaluator
``checks``          checks of the inputs before anything is written; which methods and evaluators apply
``records``         the per-example records the runner writes itself
``runner``          :func:`run_evaluation`: the chunk loop, dispatching through the registry
``state``           ``partial.jsonl`` (resume), checksums, fingerprints, the output folder's lock
``statistics``      BCa bootstrap intervals, paired comparisons (Holm), rank intervals
``report``          the summary and ``report.md``; ``plots``: ``figures/*.png``
``api``             :func:`evaluate` (``attnfaith.evaluate``: the run, in memory or in a folder),
                    :func:`load_results`, :class:`StudyResults`; ``redraw``: :func:`redraw_report`
                    (``attnfaith report``)
``hf_data``         ``datasets`` folders and Hub names; ``factories``: ``--methods module:factory``
==================  ============================================================================================
"""

from attnfaith.study.config import EvaluationConfig, PipelineError, RunExistsError
from attnfaith.study.registry import (
    ChunkContext, EvaluatorSpec, Figure, From, MethodSpec, Metric, ReportPart, Statistic, Table, Verdict,
    evaluator_names, method_names, register_evaluator, register_method, register_report_part, unregister,
)
from attnfaith.study.runner import run_evaluation
from attnfaith.study.api import StudyResults, evaluate, load_results
from attnfaith.study.redraw import redraw_report

__all__ = [
    "run_evaluation", "evaluate", "load_results", "StudyResults", "redraw_report", "EvaluationConfig", "PipelineError", "RunExistsError", "MethodSpec", "EvaluatorSpec",
    "ReportPart", "Metric", "Statistic", "Table", "Figure", "From", "ChunkContext", "Verdict", "register_method",
    "register_evaluator", "register_report_part", "unregister", "method_names", "evaluator_names",
]
