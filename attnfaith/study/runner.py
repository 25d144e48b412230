"""The runner of a study: model + texts → methods → evaluators → per-example records → summary → report and figures.

:func:`run_evaluation` (the code behind ``attnfaith evaluate``, ``attnfaith demo`` and :func:`attnfaith.evaluate`)
checks the inputs (:mod:`attnfaith.study.checks`), locks the output folder, runs the configured methods and
evaluators on chunks of examples through the registry (:mod:`attnfaith.study.registry`), appends each finished
chunk to ``DIR/partial.jsonl`` (:mod:`attnfaith.study.state`: an interrupted run resumes without recomputing
finished chunks), then writes ``DIR/results.json``, ``DIR/report.md`` (:mod:`attnfaith.study.report`) and
``DIR/figures/*.png`` (:mod:`attnfaith.study.plots`).

Chunks: ``batch_size`` examples each, in order. Seeds: every chunk gets the run's ``seed`` and the dataset index of
each of its examples as ``example_ids``; every random draw of example ``i`` comes from the CPU generator seeded
``example_seed(seed, i)`` (:mod:`attnfaith.seeding`). So the numbers do not depend on ``batch_size``, on the chunk
(or shard) an example lands in, or on the device (beyond float tolerance), and a run reproduces direct calls of the
evaluators with ``seed=seed, example_ids=<dataset indices>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from attnfaith._inputs import call_model, prepare_batch, probs_of
from attnfaith._state import model_guard
from attnfaith._text import VocabularyTokenizer, encode_texts
from attnfaith.attention.model_facts import model_device
from attnfaith.progress import RunProgress
from attnfaith.results import atomic_write, clean_json
from attnfaith.seeding import check_example_ids
from attnfaith.study import checks, records, registry, state
from attnfaith.study import report as reporting
from attnfaith.study.config import EvaluationConfig, PipelineError, parse_list

__all__ = ["run_evaluation", "ChunkRunner", "estimate_forwards"]


def estimate_forwards(config: EvaluationConfig, methods: Sequence[str], evaluators: Sequence[str],
                      n_items: Sequence[int]) -> dict[str, float]:
    """About how many forwards each stage of a run needs (``"method <name>"`` / ``"evaluator <name>"`` → forwards)
    over examples with ``n_items`` items each, from the registrations' cost estimates (:attr:`MethodSpec.cost`,
    :attr:`EvaluatorSpec.cost`; 1 per example where a registration has none)."""
    out: dict[str, float] = {}
    for m in methods:
        cost = registry.method_spec(m).cost
        out[f"method {m}"] = float(sum(cost(n, config) if cost else 1 for n in n_items))
    for e in evaluators:
        cost = registry.evaluator_spec(e).cost
        out[f"evaluator {e}"] = float(sum(cost(n, config, methods) if cost else 1 for n in n_items))
    return out


class ChunkRunner:
    """Runs the methods and evaluators of a run on one chunk at a time (:meth:`run`), reporting to a
    :class:`attnfaith.progress.RunProgress` (None: silent)."""

    def __init__(self, model: nn.Module, tokenizer: Any, config: EvaluationConfig, query: str,
                 skipped: Mapping[str, str], progress: RunProgress | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.skipped = dict(skipped)
        self.methods = [m for m in config.methods if m not in skipped]
        self.evaluators = [e for e in config.evaluators if e not in skipped]
        self.method_specs = {m: registry.method_spec(m) for m in self.methods}
        self.attributions = {m: s.build(model, config, query) for m, s in self.method_specs.items()}
        self.progress = progress

    def _stage(self, name: str, n_items: Sequence[int]):
        if self.progress is None:
            return contextlib.nullcontext()
        kind, _, which = name.partition(" ")
        est = estimate_forwards(self.config, self.methods if kind == "evaluator" else [which],
                                [which] if kind == "evaluator" else [], n_items)
        return self.progress.stage(name, est[name])

    def scores(self, method: str, batch: Any, seed: int, example_ids: Sequence[int],
               gold: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T]`` scores of ``method`` on the batch (float, detached); a seeded method gets ``seed`` and the
        examples' ``example_ids``, the known-rationale method the rationale's items ``gold``."""
        spec = self.method_specs[method]
        options: dict[str, Any] = {"seed": seed, "example_ids": list(example_ids)} if spec.seeded else {}
        if spec.needs_rationale:
            if gold is None:
                raise PipelineError(f"method {method!r} needs the rationales mapped to tokens (a tokenizer with "
                                    "word ids)")
            options["rationale_items"] = gold
        return self.attributions[method].attribute_batch(batch, None, **options).detach().float()

    def run(self, index: int, indices: Sequence[int], texts: Sequence[str], labels: Sequence[int] | None,
            rationales: Sequence[Sequence[int]] | None,
            example_ids: Sequence[int] | None = None) -> dict[str, Any]:
        """Chunk ``index`` (the examples ``indices`` of the run, their dataset indices): ``{"kind": "chunk",
        "index", "examples": [record, ...], "timings": {stage: seconds}}`` (see :mod:`attnfaith.study.records`).
        Random draws: the run's seed and each example's id (``example_ids``, default its dataset index; see the
        module docstring); given ids are stored in the records as ``example_id``."""
        config, model = self.config, self.model
        seed = config.seed
        given_ids = example_ids is not None
        example_ids = [int(i) for i in (indices if example_ids is None else example_ids)]
        timings: dict[str, float] = {}
        enc = encode_texts(self.tokenizer, texts, config.max_length)
        batch = prepare_batch(model, enc.inputs, device=model_device(model))
        items = batch.items.cpu()
        with model_guard(model), torch.no_grad():
            t0 = time.perf_counter()
            probs = probs_of(call_model(model, batch)).float().cpu()
            timings["forward"] = time.perf_counter() - t0
        examples = records.base_records(indices, texts, labels, probs, items, enc.tokens)
        if given_ids:
            for example, i in zip(examples, example_ids):
                example["example_id"] = i
        gold = None
        if rationales is not None and enc.word_ids is not None:
            gold = records.gold_mask(items, enc.word_ids, rationales)
            records.add_rationale(examples, items, gold)

        n_items = items.sum(-1).tolist()
        scores: dict[str, torch.Tensor] = {}
        for m in self.methods:
            t0 = time.perf_counter()
            with self._stage(f"method {m}", n_items):
                scores[m] = self.scores(m, batch, seed, example_ids, gold)
            timings[f"method:{m}"] = time.perf_counter() - t0
            records.add_method_scores(examples, m, scores[m].cpu(), items, gold)

        ctx = registry.ChunkContext(model=model, config=config, inputs=enc.inputs, batch=batch, items=items,
                                    labels=None if labels is None else list(labels), seed=seed,
                                    methods=self.methods, scores=scores, skipped=self.skipped,
                                    example_ids=example_ids)
        has_items = bool((items.sum(-1) > 0).all())
        for e in self.evaluators:
            spec = registry.evaluator_spec(e)
            t0 = time.perf_counter()
            with self._stage(f"evaluator {e}", n_items):
                if has_items or not spec.needs_items:
                    for path, result in spec.run(ctx):
                        if path[0] not in spec.writes:
                            raise RuntimeError(f"evaluator {e!r} yielded records for {path[0]!r}, not among its "
                                               f"writes {spec.writes}")
                        for example, rec in zip(examples, spec.records(result), strict=True):
                            registry.put_record(example, path, rec)
            timings[f"evaluator:{e}"] = time.perf_counter() - t0
        return {"kind": "chunk", "index": index, "examples": examples, "timings": timings}


def _check_labels(model: nn.Module, labels: Sequence[int], n_texts: int) -> list[int]:
    labels = [int(y) for y in labels]
    if len(labels) != n_texts:
        raise PipelineError(f"{len(labels)} labels for {n_texts} texts")
    n_classes = state.num_labels_of(model)
    if n_classes is not None:
        bad = [(i, y) for i, y in enumerate(labels) if not 0 <= y < max(n_classes, 2)]
        if bad:
            i, y = bad[0]
            raise PipelineError(f"label {y} (example {i}) is outside the model's classes 0..{max(n_classes, 2) - 1}")
    return labels


def _assemble(run: dict[str, Any], done_chunks: Mapping[int, dict], n_chunks: int, resumed: int, t_start: float,
              extra_timings: Mapping[str, float] | None) -> None:
    """Join the chunks' examples and timings into ``run`` (``examples``, ``timings``)."""
    examples: list[dict] = []
    stage_times: dict[str, float] = {}
    for c in range(n_chunks):
        examples.extend(done_chunks[c]["examples"])
        for k, v in done_chunks[c]["timings"].items():
            stage_times[k] = stage_times.get(k, 0.0) + float(v)
    run["examples"] = examples
    run["timings"] = {
        "stages": {k: round(v, 4) for k, v in stage_times.items()},
        "evaluation_seconds": round(sum(stage_times.values()), 3),
        "this_session_seconds": round(time.perf_counter() - t_start, 3),
        "chunks": n_chunks,
        "chunks_resumed": min(resumed, n_chunks),
        **{k: round(float(v), 3) for k, v in (extra_timings or {}).items()},
    }


def run_evaluation(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int] | None = None,
    methods: Sequence[str] | str | None = None,
    evaluators: Sequence[str] | str | None = None,
    out_dir: str | os.PathLike = "attnfaith-out",
    *,
    config: EvaluationConfig | None = None,
    rationales: Sequence[Sequence[int]] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    model_source: str | None = None,
    data_info: Mapping[str, Any] | None = None,
    title: str | None = None,
    report: bool = True,
    figures: bool = True,
    strict_methods: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    extra_timings: Mapping[str, float] | None = None,
    example_ids: Sequence[int] | None = None,
    progress_interval: float = 5.0,
    **config_kwargs: Any,
) -> dict[str, Any]:
    """Evaluate every chosen attribution method with every chosen evaluator on ``texts``; write the results.

    Args:
        model: a sequence classifier: a HuggingFace ``*ForSequenceClassification`` or a custom model the tap reaches,
            on the device it should run on. It is left exactly as found.
        tokenizer: its HuggingFace tokenizer, or a :class:`attnfaith._text.VocabularyTokenizer` (or a
            vocabulary with ``encode``, wrapped automatically) for a reference model.
        texts: the texts; ``labels``: optional gold labels (class indices of the model).
        methods, evaluators: registered names (or comma-separated strings); None: every method / every default
            evaluator (:func:`attnfaith.study.registry.method_names`, ``evaluator_names(default_only=True)``).
        out_dir: the output folder (``results.json``, ``report.md``, ``figures/``, ``partial.jsonl``, and the
            lock file ``.lock``), locked by :func:`attnfaith.study.state.lock_out_dir` while the run writes it.
        config: an :class:`~attnfaith.study.config.EvaluationConfig`; or pass its fields as keyword arguments
            (``layer=-1``, ``batch_size=16``, ``seed=0``...).
        rationales: optional per-text lists of whitespace-word indices that make up the known rationale: the
            report then adds the rationale recovery of each method (precision@k of its top-k tokens, k = number
            of rationale tokens), and the default methods include ``known_rationale``, the known rationale itself as
            scores (an oracle, as ERASER reports its human rationales beside the methods).
        resume: continue the run in ``out_dir`` (finished chunks are read back, not recomputed); the
            :func:`fingerprint <attnfaith.study.state.fingerprint>` (configuration, data, model weights,
            tokenizer) must match and every line's checksum must hold.
        overwrite: start again in an ``out_dir`` that holds a run (its results files are replaced).
        progress: show progress on stderr (:class:`attnfaith.progress.RunProgress`): first the estimated work
            (forwards per method and evaluator), then on a terminal one bar with an ETA, in logs a line at most
            every ``progress_interval`` seconds while work moves and one per chunk, and the projected total after
            the first chunk.
        model_source, data_info, title: recorded in ``results.json`` and shown in the report.
        report, figures: write ``report.md`` / ``figures/*.png`` (figures need matplotlib).
        strict_methods: a method or evaluator that does not apply to the model raises instead of being skipped
            (with a note in the report).
        on_chunk: called as ``on_chunk(done_chunks, total_chunks)`` after each chunk is saved.
        on_warning: called with a one-line warning before the work starts (texts truncated to ``max_length``);
            default :func:`warnings.warn`.
        extra_timings: further ``{name: seconds}`` recorded in ``results.json``'s ``timings`` (the CLI's data and
            model loading).
        example_ids: one non-negative int per text, its id in a larger dataset (e.g. the row of a test split):
            the id its random draws depend on (default: its position in ``texts``), stored in its record as
            ``example_id``.

    Returns:
        The ``results.json`` content as a dict; ``data.n_truncated`` / ``data.truncated``: the texts cut to
        ``max_length`` tokens, ``data.dropped_empty``: the texts left out for want of a real token.

    Raises:
        PipelineError: bad names or options, a ``max_length`` the model cannot take, a tokenizer larger than the
            model's embedding or that maps most tokens to its unknown token, a run already in ``out_dir``, another
            run writing ``out_dir``, a resume that does not match. Every check on the inputs comes before
            anything is written to ``out_dir``.
    """
    if config is None:
        names: dict[str, Any] = {}
        if methods is not None:
            names["methods"] = tuple(parse_list(methods, registry.method_names(), "method"))
        if evaluators is not None:
            names["evaluators"] = tuple(parse_list(evaluators, registry.evaluator_names(), "evaluator"))
        config = EvaluationConfig(**names, **config_kwargs)
    elif config_kwargs:
        raise TypeError("pass either config= or its fields as keyword arguments, not both")
    if not isinstance(model, nn.Module):
        raise PipelineError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(tokenizer) and hasattr(tokenizer, "encode") and hasattr(tokenizer, "itos"):
        tokenizer = VocabularyTokenizer(tokenizer)  # a word vocabulary (attnfaith's reference models)
    texts = [str(t) for t in texts]
    if not texts:
        raise PipelineError("no texts to evaluate")
    if labels is not None:
        labels = _check_labels(model, labels, len(texts))
    if example_ids is not None:
        try:
            example_ids = check_example_ids(example_ids, len(texts))
        except (TypeError, ValueError) as exc:
            raise PipelineError(str(exc).replace("the batch has", "there are").replace("rows", "texts")) from None
    if rationales is not None:
        rationales = [list(map(int, r)) for r in rationales]
        if len(rationales) != len(texts):
            raise PipelineError(f"{len(rationales)} rationales for {len(texts)} texts")
    oracles = [m for m in config.methods if registry.method_spec(m).needs_rationale]
    if rationales is None and oracles:
        if tuple(config.methods) != tuple(registry.method_names(default_only=True)):
            raise PipelineError(f"method {oracles[0]!r} needs rationales (--rationale-column / rationales=)")
        # the default methods: the known rationale joins them only in runs with rationales
        config = dataclasses.replace(config, methods=tuple(m for m in config.methods if m not in oracles))

    out = Path(out_dir)
    state.refuse_existing_run(out, resume, overwrite)
    t_start = time.perf_counter()

    # checks that need the model and the tokenizer: all before anything is written
    checks.check_max_length(model, tokenizer, config.max_length)
    checks.check_vocabulary_size(model, tokenizer)
    scan = checks.scan_texts(tokenizer, texts, config.max_length)
    checks.check_unknown_share(tokenizer, scan, len(texts))
    if not scan.kept:
        raise PipelineError("no text has a real (non-special) token to explain")
    # which methods / evaluators apply (checked on the first example that has a token)
    enc0 = encode_texts(tokenizer, [texts[scan.kept[0]]], config.max_length)
    with model_guard(model):
        query, skipped, notes = checks.probe(model, enc0, config)
    parts = checks.attention_parts()
    skipped = {k: v for k, v in skipped.items() if k in config.methods or k in config.evaluators or k in parts}
    if strict_methods:
        bad = {k: v for k, v in skipped.items() if k in config.methods or k in config.evaluators}
        if bad:
            k, v = next(iter(bad.items()))
            raise PipelineError(f"{k} does not apply to this model: {v}")

    run: dict[str, Any] = {
        "format": state.RESULTS_FORMAT,
        "title": title,
        "config": config.to_dict(),
        "seed": config.seed,
        "model": state.model_description(model, model_source),
        "tokenizer": state.tokenizer_description(tokenizer),
        "data": {
            **dict(data_info or {}),
            "n_examples": len(texts),
            "has_labels": labels is not None,
            "has_rationales": rationales is not None,
            "fingerprint": state.data_fingerprint(texts, labels, rationales, example_ids),
            # examples with no real token (empty texts) cannot be explained: they are left out, and listed
            "dropped_empty": scan.dropped,
            "n_truncated": len(scan.truncated),
            "truncated": scan.truncated,
        },
        "versions": state.versions(),
        "device": str(model_device(model)),
        "skipped": skipped,
        "query": query,
    }
    if scan.dropped:
        notes.append(f"{len(scan.dropped)} example(s) without any real token left out: {scan.dropped[:10]}"
                     f"{'...' if len(scan.dropped) > 10 else ''}")
    if scan.truncated:
        truncation = reporting.truncation_sentence(len(scan.truncated), len(texts), config.max_length)
        notes.append(truncation)
        (on_warning or (lambda m: warnings.warn(m, stacklevel=3)))(truncation)

    out.mkdir(parents=True, exist_ok=True)
    with state.lock_out_dir(out):
        state.refuse_existing_run(out, resume, overwrite)  # again, now that no other run can write the folder
        if overwrite and not resume:
            state.remove_earlier_run(out)
        done_chunks = state.open_state(out, run, resume, notes)
        kept = scan.kept
        bs = config.batch_size
        n_chunks = math.ceil(len(kept) / bs)
        state_file = out / state.STATE_FILE
        state.check_resumed_chunks(state_file, {c: r for c, r in done_chunks.items() if c < n_chunks}, kept, bs)
        todo = [c for c in range(n_chunks) if c not in done_chunks]
        n_done_examples = sum(len(done_chunks[c]["examples"]) for c in done_chunks if c < n_chunks)
        meter = None
        if todo and progress:
            active_m = [m for m in config.methods if m not in skipped]
            active_e = [e for e in config.evaluators if e not in skipped]
            estimates = estimate_forwards(config, active_m, active_e, [scan.n_items[i] for i in kept])
            meter = RunProgress(sum(estimates.values()), n_chunks, len(kept), done_chunks=n_chunks - len(todo),
                                done_examples=n_done_examples, interval=progress_interval)
            meter.announce(estimates)
        runner = ChunkRunner(model, tokenizer, config, query, skipped, meter) if todo else None
        resumed = len(done_chunks)
        try:
            for c in todo:
                idx = kept[c * bs: (c + 1) * bs]
                rec = runner.run(c, idx, [texts[i] for i in idx], None if labels is None else [labels[i] for i in idx],
                                 None if rationales is None else [rationales[i] for i in idx],
                                 None if example_ids is None else [example_ids[i] for i in idx])
                state.append_chunk(state_file, rec)
                done_chunks[c] = rec
                if meter is not None:
                    meter.chunk_done(len(idx), sum(rec["timings"].values()))
                if on_chunk is not None:
                    on_chunk(len(done_chunks), n_chunks)
        finally:
            if meter is not None:
                meter.close()

        _assemble(run, done_chunks, n_chunks, resumed, t_start, extra_timings)
        run["summary"] = reporting.summarise(run)
        run["notes"] = notes
        if figures:
            t0 = time.perf_counter()
            try:
                from attnfaith.study import plots

                run["figures"] = plots.make_figures(run, out / "figures")
            except ImportError as exc:
                run["figures"] = {}
                run["notes"].append(f"figures skipped: {exc} (pip install 'attnfaith[plot]')")
            run["timings"]["figures_seconds"] = round(time.perf_counter() - t0, 3)
        run = clean_json(run)
        atomic_write(out / state.RESULTS_FILE, json.dumps(run, indent=1, allow_nan=False))
        if report:
            atomic_write(out / "report.md", reporting.render_markdown(run))
    return run
