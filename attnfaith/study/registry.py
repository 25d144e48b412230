"""The registry of a study: attribution methods, evaluators, and what the report and the figures show of each.

Everything the runner (:mod:`attnfaith.study.runner`), the report (:mod:`attnfaith.study.report`) and the figures
(:mod:`attnfaith.study.plots`) know about a method or an evaluator comes from its registration here; none of them
names a method, an evaluator or a field of a result.

* A :class:`MethodSpec` builds a token attribution (an object with ``attribute_batch(batch, target)``) for a run.
* An :class:`EvaluatorSpec` runs an evaluator on one chunk (:class:`ChunkContext`) and yields ``(path, Result)``
  pairs; each result becomes per-example records (:meth:`EvaluatorSpec.records`: the fields of
  :meth:`attnfaith.evaluators.result.Result.records` named by :attr:`EvaluatorSpec.record`) stored in every example
  under ``path`` (e.g. ``("kendall", "loo", "attention")``).
* A :class:`ReportPart` (every evaluator spec is one) declares what the summary, the report and the figures show:
  :class:`Metric` (a statistic per method or of the attention, with its place in the records), :class:`Statistic`
  (one number of the run), :class:`Table` (a paper's table), :class:`Figure` and a verdict clause. Parts are shown in
  the order of :attr:`ReportPart.order`.

The built-in registrations are in :mod:`attnfaith.study.builtin` (imported on the first look-up). Registration order
is the order of :func:`method_names` / :func:`evaluator_names` (and so of ``results.json``'s ``config``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from attnfaith._inputs import Batch
    from attnfaith.evaluators.result import Result
    from attnfaith.study.config import EvaluationConfig

__all__ = [
    "MethodSpec", "EvaluatorSpec", "ReportPart", "Metric", "Statistic", "Table", "Figure", "From", "ChunkContext",
    "Verdict", "register_method", "register_evaluator", "register_report_part", "unregister", "method_spec",
    "evaluator_spec", "method_names", "evaluator_names", "report_parts", "metrics", "metric", "method_label",
    "record_at", "put_record", "METHOD",
]

#: the placeholder of a method's name in :attr:`Metric.path` and :attr:`Figure.key`
METHOD = "{method}"


# -------------------------------------------------------------------------------------------------------------
# declarations
# -------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class MethodSpec:
    """An attribution method of a study.

    Attributes:
        name: the name on the command line and in ``results.json``.
        label, short, color: its name in the report, in figure tick labels, and its colour in figures.
        build: ``build(model, config, query) -> attribution``: an object with ``attribute_batch(batch, target)``
            returning ``[B, T]`` scores (``query``: the attention row the classifier reads, see
            :func:`attnfaith.evaluators.selection.auto_query`). Built once per run.
        seeded: ``attribute_batch`` also takes ``seed=`` (the run's seed) and ``example_ids=`` (the examples'
            dataset indices): row ``b`` draws from :func:`attnfaith.seeding.example_generators`.
        ranking: what evaluators that rank tokens get instead of the scores (a ranking name of
            :data:`attnfaith.evaluators.RANKINGS`, e.g. ``"random"``), or None: the scores.
        reads_attention: needs a reachable attention layer (skipped, with a note, on a model without one).
        check: ``check(model, batch, query, layers) -> reason | None`` on the first example: why the method does
            not apply to the model (it is then skipped), or None.
        default: among the methods a run uses when none are named (:func:`method_names` ``(default_only=True)``).
        cost: ``cost(n_items, config) -> forwards``: about how many forwards (a backward counts as two) the method
            needs for one example with ``n_items`` items (progress estimates; None: 1).
        needs_rationale: the scores come from the run's known rationale (an oracle): ``attribute_batch`` also takes
            ``rationale_items=`` (BoolTensor ``[B, T]``, the items of the rationale's words). Used only in runs with
            rationales; naming it in a run without them is an error.
    """

    name: str
    label: str
    short: str
    color: str
    build: Callable[["nn.Module", "EvaluationConfig", str], Any]
    seeded: bool = False
    ranking: str | None = None
    reads_attention: bool = False
    check: Callable[["nn.Module", "Batch", str, Sequence[Any]], str | None] | None = None
    default: bool = True
    cost: Callable[[int, "EvaluationConfig"], float] | None = None
    needs_rationale: bool = False


@dataclass(frozen=True)
class From:
    """A stored record field computed from a field of :meth:`Result.records`: ``fn(record[field])``."""

    field: str
    fn: Callable[[Any], Any]


@dataclass(frozen=True, kw_only=True)
class Metric:
    """A per-example value summarised with a bootstrap interval.

    Attributes:
        key: its key in ``summary["methods"][method]`` (``per_method``) or ``summary["attention"]``.
        header: the column header (method × metric table) or the test's name (attention tests).
        description: what it is (``docs`` and the attention-test table).
        path: where its record is in an example (:func:`record_at`); :data:`METHOD` stands for the method.
        value: the record's field, or a function of the record (None: undefined for this example).
        better: ``"higher"``, ``"lower"`` or ``""``; percent: shown as a percentage.
        per_method: a column of the method × metric table; False: a row of the tests of the attention itself.
    """

    key: str
    header: str
    description: str
    path: tuple[str, ...]
    value: str | Callable[[Mapping[str, Any]], Any]
    better: str = ""
    percent: bool = False
    per_method: bool = True

    def values(self, run: Mapping[str, Any], method: str | None = None) -> list[Any]:
        """The per-example values of this metric in ``run["examples"]`` (None where undefined)."""
        path = tuple(method if p == METHOD else p for p in self.path)
        out = []
        for ex in run["examples"]:
            rec = record_at(ex, path)
            if rec is None:
                out.append(None)
            elif isinstance(self.value, str):
                out.append(rec.get(self.value) if isinstance(rec, Mapping) else None)
            else:
                out.append(self.value(rec))
        return out


@dataclass(frozen=True, kw_only=True)
class Statistic:
    """One number of the run, stored as ``summary[key]``: ``compute(run, seed)``; ``sentence(summary)`` is a
    line shown after the attention tests (or None)."""

    key: str
    compute: Callable[[Mapping[str, Any], int], Any]
    sentence: Callable[[Mapping[str, Any]], str | None] | None = None


@dataclass(frozen=True, kw_only=True)
class Table:
    """A paper's table: ``summary[key] = compute(run)``; ``render(run, data) -> markdown lines`` (shown when the
    data is not empty)."""

    key: str
    compute: Callable[[Mapping[str, Any]], Any]
    render: Callable[[Mapping[str, Any], Any], list[str]]


@dataclass(frozen=True, kw_only=True)
class Figure:
    """A figure: ``draw(run, path) -> drawn`` writes ``figures/<key>.png``. With :data:`METHOD` in ``key`` one
    figure per method: ``draw(run, method, path)``, and ``{label}`` in ``title`` / ``caption`` is the method's
    label."""

    key: str
    title: str
    caption: str
    draw: Callable[..., bool]

    @property
    def per_method(self) -> bool:
        return METHOD in self.key


@dataclass(frozen=True)
class Verdict:
    """What a verdict clause reads: the run, the method × metric summary, the attention tests, the method, the
    seed of the bootstrap, and the paired comparisons of the methods (``summary["comparisons"]``: per metric key,
    :func:`attnfaith.study.statistics.compare_methods`)."""

    run: Mapping[str, Any]
    table: Mapping[str, Mapping[str, Any]]
    attention: Mapping[str, Any]
    method: str
    seed: int
    comparisons: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ReportPart:
    """What the summary, ``report.md`` and the figures show of one evaluator (or of the runner's own records).

    Attributes:
        name: the part's name (an evaluator's name for an :class:`EvaluatorSpec`).
        order: parts are shown in increasing order (columns, rows, tables, figures, verdict clauses).
        metrics, statistics, tables, figures: see :class:`Metric`, :class:`Statistic`, :class:`Table`,
            :class:`Figure`.
        verdict: ``verdict(Verdict) -> [clause, ...]``: this part's sentences in a method's verdict.
    """

    name: str
    order: int = 100
    metrics: tuple[Metric, ...] = ()
    statistics: tuple[Statistic, ...] = ()
    tables: tuple[Table, ...] = ()
    figures: tuple[Figure, ...] = ()
    verdict: Callable[[Verdict], list[str]] | None = None


@dataclass
class ChunkContext:
    """One chunk as an evaluator's :attr:`EvaluatorSpec.run` sees it.

    Attributes:
        model, config: the run's model and :class:`~attnfaith.study.config.EvaluationConfig`.
        inputs: the tokenizer's output for the chunk (``input_ids``, ``attention_mask``, ...).
        batch: the normalised :class:`attnfaith._inputs.Batch`; ``items``: its items on the CPU.
        labels: the gold labels of the chunk, or None.
        seed: the run's seed (``config.seed``, the same for every chunk).
        example_ids: the dataset index of each example of the chunk (``[B]`` ints): every random draw of an
            example comes from the generator seeded ``example_seed(seed, example_ids[b])``
            (:mod:`attnfaith.seeding`), so pass both to every evaluator or method that draws
            (``seed=ctx.seed`` and ``evaluate(..., example_ids=ctx.example_ids)``). None: ``0..B-1``.
        methods: the methods that run (the configured ones less the skipped); ``scores``: their ``[B, T]`` scores.
        skipped: ``{name: reason}`` of what does not apply to the model.
    """

    model: "nn.Module"
    config: "EvaluationConfig"
    inputs: Mapping[str, Any]
    batch: "Batch"
    items: "torch.Tensor"
    labels: list[int] | None
    seed: int
    methods: list[str]
    scores: dict[str, "torch.Tensor"]
    skipped: Mapping[str, str]
    example_ids: list[int] | None = None

    @property
    def variants_per_forward(self) -> int | None:
        return self.config.variants_per_forward

    def attribution(self, method: str) -> Any:
        """What an evaluator that ranks tokens gets for ``method``: its :attr:`MethodSpec.ranking` name, or its
        scores."""
        return method_spec(method).ranking or self.scores[method]


@dataclass(frozen=True, kw_only=True)
class EvaluatorSpec(ReportPart):
    """An evaluator of a study (and its :class:`ReportPart`).

    Attributes:
        run: ``run(ChunkContext) -> iterable of (path, Result)``: every result the evaluator gives on the chunk
            and where its per-example records go (``path[0]`` one of :attr:`writes`).
        record: stored key → the :meth:`Result.records` field it holds (or a :class:`From`), in stored order.
        writes: the keys it writes in every example.
        needs_attention: tests the model's own attention (skipped, with a note, on a model without one).
        attention_parts: further skip keys set when the attention is unreachable (e.g. ``"erasure:attention"``).
        needs_items: runs only on chunks whose every example has an item.
        default: run when no evaluators are named.
        cost: ``cost(n_items, config, methods) -> forwards``: about how many variants of one example with
            ``n_items`` items the evaluator runs through the model for the run's ``methods`` (an upper bound where
            it stops early); the progress display's estimate and ETA (None: 1).
    """

    run: Callable[[ChunkContext], Iterable[tuple[tuple[str, ...], "Result"]]]
    record: Mapping[str, str | From]
    writes: tuple[str, ...]
    needs_attention: bool = False
    attention_parts: tuple[str, ...] = ()
    needs_items: bool = False
    default: bool = True
    cost: Callable[[int, "EvaluationConfig", Sequence[str]], float] | None = None

    def records(self, result: "Result") -> list[dict[str, Any]]:
        """The stored per-example records of ``result``: :attr:`record`'s keys, in order."""
        needed = {src.field if isinstance(src, From) else src for src in self.record.values()}
        rows = result.records(needed)
        return [{key: (src.fn(row[src.field]) if isinstance(src, From) else row[src])
                 for key, src in self.record.items()} for row in rows]


# -------------------------------------------------------------------------------------------------------------
# the registry
# -------------------------------------------------------------------------------------------------------------

_METHODS: dict[str, MethodSpec] = {}
_EVALUATORS: dict[str, EvaluatorSpec] = {}
_PARTS: dict[str, ReportPart] = {}
_LOCK = threading.RLock()
_BUILTINS_LOADED = False


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    with _LOCK:
        if not _BUILTINS_LOADED:
            _BUILTINS_LOADED = True
            import attnfaith.study.builtin  # noqa: F401  (registers the built-in methods and evaluators)


def _add(table: dict, name: str, spec: Any, replace: bool, what: str) -> None:
    _load_builtins()
    with _LOCK:
        if name in table and not replace:
            raise ValueError(f"{what} {name!r} is already registered (pass replace=True to replace it)")
        table[name] = spec


def register_method(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Add an attribution method; ``ValueError`` if the name is taken (unless ``replace``)."""
    _add(_METHODS, spec.name, spec, replace, "method")
    return spec


def register_evaluator(spec: EvaluatorSpec, *, replace: bool = False) -> EvaluatorSpec:
    """Add an evaluator (and its report part); ``ValueError`` if the name is taken (unless ``replace``)."""
    if spec.name in _PARTS:
        raise ValueError(f"{spec.name!r} is already the name of a report part")
    _add(_EVALUATORS, spec.name, spec, replace, "evaluator")
    return spec


def register_report_part(part: ReportPart, *, replace: bool = False) -> ReportPart:
    """Add a report part that is not an evaluator (what the runner's own records show)."""
    _add(_PARTS, part.name, part, replace, "report part")
    return part


def unregister(name: str) -> None:
    """Remove the method, evaluator or report part ``name`` (``KeyError`` if none is registered)."""
    _load_builtins()
    with _LOCK:
        for table in (_METHODS, _EVALUATORS, _PARTS):
            if name in table:
                del table[name]
                return
    raise KeyError(name)


def method_spec(name: str) -> MethodSpec:
    """The registered method ``name`` (``KeyError`` if none)."""
    _load_builtins()
    return _METHODS[name]


def evaluator_spec(name: str) -> EvaluatorSpec:
    """The registered evaluator ``name`` (``KeyError`` if none)."""
    _load_builtins()
    return _EVALUATORS[name]


def method_names(default_only: bool = False) -> tuple[str, ...]:
    """Every registered method (only those with ``default=True`` if ``default_only``), in registration order."""
    _load_builtins()
    return tuple(n for n, s in _METHODS.items() if s.default or not default_only)


def evaluator_names(default_only: bool = False) -> tuple[str, ...]:
    """Every registered evaluator (only those with ``default=True`` if ``default_only``), in registration
    order."""
    _load_builtins()
    return tuple(n for n, s in _EVALUATORS.items() if s.default or not default_only)


def report_parts() -> list[ReportPart]:
    """Every report part (evaluators and the others) in :attr:`ReportPart.order` (ties: registration order)."""
    _load_builtins()
    parts = [*_EVALUATORS.values(), *_PARTS.values()]
    return sorted(parts, key=lambda p: p.order)


def metrics(per_method: bool | None = None) -> Iterator[Metric]:
    """Every metric of :func:`report_parts`, in order (only per-method or attention ones when given)."""
    for part in report_parts():
        for m in part.metrics:
            if per_method is None or m.per_method == per_method:
                yield m


def metric(key: str) -> Metric:
    """The registered metric ``key`` (``KeyError`` if none)."""
    for m in metrics():
        if m.key == key:
            return m
    raise KeyError(key)


def method_label(name: str) -> str:
    """The report's name for a method (the name itself for an unregistered one)."""
    _load_builtins()
    spec = _METHODS.get(name)
    return spec.label if spec else name


def record_at(example: Mapping[str, Any], path: Sequence[str]) -> Any:
    """``example[path[0]][path[1]]...``, or None where a key is missing."""
    cur: Any = example
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return None
        cur = cur[key]
    return cur


def put_record(example: dict[str, Any], path: Sequence[str], record: Any) -> None:
    """Store ``record`` at ``path`` in ``example`` (intermediate dicts created in order)."""
    cur = example
    for key in path[:-1]:
        cur = cur.setdefault(key, {})
    cur[path[-1]] = record
