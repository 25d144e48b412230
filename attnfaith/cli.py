"""``attnfaith`` command line: ``attnfaith evaluate``, ``attnfaith report``, ``attnfaith demo`` and ``attnfaith
replicate`` (also ``python -m attnfaith``).

Every error is one line on stderr, ``attnfaith: error: ...``, with exit code 2 for a usage problem (bad option, unknown
method or evaluator, an integer option out of range) and 1 for anything else (unreadable data, a model that cannot be
loaded or is not a sequence classifier, a label that is not a class of the model, a ``--max-length`` or ``--tokenizer``
that does not fit the model, another run writing ``--out``, no CUDA...). Every check on the inputs comes before
anything is written to ``--out``. Warnings (texts cut to ``--max-length``) are one line, ``attnfaith: warning: ...``.
``ATTNFAITH_DEBUG=1`` shows the traceback of an unexpected error. Ctrl-C stops a run with exit code 130; every
finished chunk is kept, and ``--resume`` continues.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["main", "build_parser", "CLIError", "load_hf_classifier"]

PROG = "attnfaith"
#: --dtype choices
DTYPES = ("float32", "float16", "bfloat16", "auto")


class CLIError(Exception):
    """An error reported as one line; ``code`` is the exit status (2: usage, 1: runtime)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2) instead of the usage text plus the error."""

    def error(self, message: str):  # type: ignore[override]
        raise CLIError(f"{message} (see '{self.prog} --help')", code=2)


def _one_line(exc: BaseException) -> str:
    from attnfaith.study.hf_data import one_line

    return one_line(exc)


# -------------------------------------------------------------------------------------------------------------
# parser
# -------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from attnfaith import __version__
    from attnfaith.study.registry import evaluator_names, method_names

    methods, evaluators, defaults = method_names(), evaluator_names(), evaluator_names(default_only=True)

    parser = _Parser(
        prog=PROG,
        description="Is this explanation faithful? Jain & Wallace (2019), Serrano & Smith (2019) and Wiegreffe & "
                    "Pinter (2019) faithfulness tests for attention, rollout, gradients, integrated gradients and "
                    "leave-one-out, on any HuggingFace sequence classifier.",
        epilog="Start with 'attnfaith demo' (offline, about a minute), then 'attnfaith evaluate --help'.",
    )
    parser.add_argument("--version", action="version", version=f"attnfaith {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    ev = sub.add_parser(
        "evaluate",
        help="evaluate a sequence classifier's explanations on a dataset and write a report",
        description="Run every chosen attribution method and faithfulness evaluator on a HuggingFace sequence "
                    "classifier and a CSV/TSV/JSONL file or a HuggingFace dataset; write results.json, report.md "
                    "and figures/ to --out.",
        epilog="Example: attnfaith evaluate --model ./my-model --data dev.csv --text-column sentence "
               "--label-column label --limit 200 --out runs/my-model",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = ev.add_argument_group("model and data")
    g.add_argument("--model", required=True, metavar="PATH_OR_HUB_ID",
                   help="a folder written by save_pretrained or a Hub id of a *ForSequenceClassification model")
    g.add_argument("--tokenizer", metavar="PATH_OR_HUB_ID", default=None,
                   help="tokenizer to use (default: the model's)")
    g.add_argument("--revision", default=None, help="model revision on the Hub (branch, tag or commit)")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="allow the model's own Python code from the Hub to run (off unless given)")
    g.add_argument("--data", required=True, metavar="FILE_OR_DATASET",
                   help="a .csv, .tsv or .jsonl file with a header/keys, or a HuggingFace dataset: a folder written "
                        "by save_to_disk, a folder of data files, or a Hub dataset name (needs attnfaith[datasets])")
    g.add_argument("--dataset-config", default=None, metavar="NAME",
                   help="the dataset's configuration (e.g. sst2 for --data glue)")
    g.add_argument("--text-column", default="text", help="column holding the text")
    g.add_argument("--label-column", default=None,
                   help="column holding the gold label (class index or the model's label name); optional")
    g.add_argument("--split", default=None,
                   help="a table file: keep only rows whose split column has this value (e.g. dev); a dataset: the "
                        "split to read (e.g. validation; needed when it has several)")
    g.add_argument("--split-column", default=None,
                   help="column holding the split name (default: 'split' or 'exp_split' when --split is given)")
    g.add_argument("--rationale-column", default=None,
                   help="column with the indices of the whitespace words of a known rationale (e.g. '3 7' or "
                        "'[3, 7]'): adds the rationale recovery (precision@k) of every method")
    g.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate only the first N rows")
    g.add_argument("--max-length", type=int, default=128,
                   help="truncate texts to this many tokens, special tokens included (at most what the model takes)")

    g = ev.add_argument_group("what to run")
    g.add_argument("--methods", default=",".join(method_names(default_only=True)),
                   help=f"comma-separated attribution methods, from: {', '.join(methods)}; or module:factory "
                        "(name=module:factory) for your own: factory(model) returns any object with Captum's "
                        ".attribute (docs/cli.md)")
    g.add_argument("--evaluators", default=",".join(defaults),
                   help=f"comma-separated evaluators, from: {', '.join(evaluators)} (adversarial is slow: "
                        "off unless asked)")
    g.add_argument("--layer", type=int, default=-1,
                   help="attention layer read by 'attention' and tested by the attention evaluators (call order; "
                        "-1 = last)")
    g.add_argument("--erasure-levels", default="token,attention",
                   help="erasure levels: token (delete tokens) and/or attention (zero attention weights)")
    g.add_argument("--permutations", type=int, default=100, help="permutations per example (Jain & Wallace: 100)")
    g.add_argument("--ig-steps", type=int, default=50, help="integrated-gradients steps")
    g.add_argument("--n-random", type=int, default=5,
                   help="random orders of the random erasure baseline (Serrano & Smith: 5)")
    g.add_argument("--adversarial-steps", type=int, default=500, help="Adam steps of the adversarial search (JW: 500)")

    g = ev.add_argument_group("running")
    g.add_argument("--device", default="auto", help="auto (cuda when present, else cpu), cpu, cuda or cuda:N")
    g.add_argument("--dtype", default="float32", choices=DTYPES,
                   help="the model's dtype (auto: as saved in the checkpoint)")
    g.add_argument("--batch-size", type=int, default=16,
                   help="examples per chunk (results are saved after each chunk)")
    g.add_argument("--variants-per-forward", type=int, default=None,
                   help="perturbed variants per forward pass (default: chosen from the memory budget)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of every random choice, 0..2**32-1 (example i draws from example_seed(seed, i))")
    g.add_argument("--out", required=True, metavar="DIR", help="output folder")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out: finished chunks are kept, the rest is computed")
    g.add_argument("--overwrite", action="store_true", help="replace a finished or partial run in --out")
    g.add_argument("--no-figures", action="store_true", help="do not draw figures")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=cmd_evaluate)

    rp = sub.add_parser(
        "report",
        help="redraw report.md and the figures of a finished run from its results.json (no model needed)",
        description="Recompute the summary of a finished 'attnfaith evaluate' run from the per-example records in "
                    "DIR/results.json and write report.md, figures/ and results.json again, without running any "
                    "model: after an upgrade, or to draw the figures of a run made with --no-figures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    rp.add_argument("dir", metavar="DIR", help="the --out folder of a finished run")
    rp.add_argument("--no-figures", action="store_true", help="do not draw figures")
    rp.set_defaults(func=cmd_report)

    dm = sub.add_parser(
        "demo",
        help="offline demo: a synthetic task with a known rationale, two small models, the full report",
        description="Generate a text-classification task with planted sentiment markers (the rationale is known), "
                    "train a tiny BERT (built from a config) and Jain & Wallace's BiLSTM with attention on it in "
                    "seconds, evaluate both with every method, and write a report whose extra column says how well "
                    "each method's top-k tokens recover the planted markers. Runs offline.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    dm.add_argument("--out", default="out/demo", metavar="DIR", help="output folder (replaced if it holds a demo)")
    dm.add_argument("--seed", type=int, default=0, help="seed of the data, the models and the evaluation")
    dm.add_argument("--n-train", type=int, default=1200, help="training sentences")
    dm.add_argument("--n-eval", type=int, default=120, help="evaluated sentences")
    dm.add_argument("--models", default="bert,bilstm", help="which demo models: bert and/or bilstm")
    dm.add_argument("--quick", action="store_true", help="a much smaller run (for tests)")
    dm.add_argument("--threads", type=int, default=1,
                    help="CPU threads for torch (1 is fastest for these tiny models)")
    dm.add_argument("--quiet", action="store_true", help="no progress bars")
    dm.set_defaults(func=cmd_demo)

    from attnfaith.reference.replication import add_replicate_parser

    add_replicate_parser(sub)  # attnfaith replicate: the papers' replication recipe (docs/replication.md)
    return parser


# -------------------------------------------------------------------------------------------------------------
# loading
# -------------------------------------------------------------------------------------------------------------


def resolve_device(name: str):
    """The torch device of ``--device``: ``auto`` is CUDA when it is available, else the CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise CLIError(f"--device {name!r} is not a device ({_one_line(exc)}); use cpu, cuda or cuda:N", code=2)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}"
                           f"{', built without CUDA' if torch.version.cuda is None else ''}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CLIError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise CLIError(f"--device {name}: MPS is not available on this machine")
    elif device.type != "cpu":
        raise CLIError(f"--device {name}: unsupported device type; use auto, cpu, cuda or cuda:N", code=2)
    return device


#: files of which a folder written by a tokenizer's save_pretrained has at least one
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
                    "spiece.model", "sentencepiece.bpe.model", "tokenizer.model", "special_tokens_map.json")


def _check_source(ref: str, flag: str, what: str) -> None:
    """:class:`CLIError` naming ``flag`` when ``ref`` is neither an existing path nor a well-formed Hub id."""
    if Path(ref).exists():
        return
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(ref)
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return
    except Exception:
        raise CLIError(f"{flag} {ref}: cannot load {what}: no such folder (and not a valid Hub id)") from None


def _not_found_here(ref: str) -> str:
    """`` (and there is no folder 'X' here)`` when ``ref`` is not a local path (it was tried as a Hub id), else
    ``""``."""
    return "" if Path(ref).exists() else f" (and there is no folder {ref!r} here)"


def _needs_remote_code(exc: BaseException) -> bool:
    """Whether transformers refused to load because the checkpoint needs its own Python code."""
    text = str(exc)
    return "trust_remote_code" in text or "custom code" in text


def _remote_code_error(ref: str, flag: str) -> CLIError:
    """The one-line refusal of a checkpoint that needs its own code, naming ``--trust-remote-code``."""
    return CLIError(f"{flag} {ref}: it needs its own Python code (from the Hub or its folder), which never runs "
                    "unless you pass --trust-remote-code; pass it only if you trust that code")


def _check_tokenizer_files(ref: str, flag: str) -> None:
    """:class:`CLIError` when the local folder ``ref`` has no tokenizer file (transformers would build an empty
    tokenizer that maps every word to its unknown token)."""
    folder = Path(ref)
    if folder.is_dir() and not any((folder / n).is_file() for n in _TOKENIZER_FILES):
        raise CLIError(f"{flag} {ref}: the folder has no tokenizer files ({', '.join(_TOKENIZER_FILES[:3])}...); "
                       "pass --tokenizer with the tokenizer the model was trained with")


def load_hf_classifier(model_ref: str, tokenizer_ref: str | None = None, *, revision: str | None = None,
                       trust_remote_code: bool = False, dtype: str = "float32"):
    """Load a HuggingFace sequence classifier and its tokenizer, or raise :class:`CLIError` with one clear line.

    Refuses a reference that is neither a folder nor a Hub id, a checkpoint that is not a sequence classifier (its
    config names another architecture, its model type has no sequence-classification class, or the classification
    head's weights are missing from the checkpoint), code from the checkpoint without ``trust_remote_code``, and a
    tokenizer folder without tokenizer files. Head weights are the missing keys that
    :func:`attnfaith.attention.model_facts.is_head_parameter` accepts.
    """
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from attnfaith.attention.model_facts import is_head_parameter

    transformers.logging.set_verbosity_error()
    kw: dict[str, Any] = {"trust_remote_code": bool(trust_remote_code)}
    if revision:
        kw["revision"] = revision
    local = Path(model_ref)
    if local.exists() and not local.is_dir():
        raise CLIError(f"--model {model_ref}: not a folder (give the folder written by save_pretrained or a Hub id)")
    _check_source(model_ref, "--model", "model")
    tok_ref, tok_flag = (tokenizer_ref, "--tokenizer") if tokenizer_ref else (model_ref, "--model")
    if dtype not in DTYPES:
        raise CLIError(f"--dtype {dtype}: choose from {', '.join(DTYPES)}", code=2)
    model_kw = {**kw, "dtype": dtype if dtype == "auto" else getattr(torch, dtype)}
    if tokenizer_ref:
        _check_source(tokenizer_ref, "--tokenizer", "the tokenizer")
    try:
        config = AutoConfig.from_pretrained(model_ref, **kw)
    except Exception as exc:  # OSError (not found / offline), ValueError (remote code, bad config), ...
        if _needs_remote_code(exc) and not trust_remote_code:
            raise _remote_code_error(model_ref, "--model") from None
        raise CLIError(f"cannot load model {model_ref!r}: {_one_line(exc)}{_not_found_here(model_ref)}") from None
    _check_tokenizer_files(tok_ref, tok_flag)
    archs = list(getattr(config, "architectures", None) or [])
    if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
        raise CLIError(f"--model {model_ref} is not a sequence classifier (its config names {', '.join(archs)}); "
                       "attnfaith evaluate needs a *ForSequenceClassification checkpoint")
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(model_ref, config=config,
                                                                         output_loading_info=True, **model_kw)
    except ValueError as exc:
        msg = _one_line(exc)
        if _needs_remote_code(exc) and not trust_remote_code:
            raise _remote_code_error(model_ref, "--model") from None
        if "Unrecognized configuration class" in msg or "sequence classification" in msg.lower():
            raise CLIError(f"--model {model_ref} ({getattr(config, 'model_type', '?')}) is not a sequence "
                           "classifier: transformers has no sequence-classification model for it") from None
        raise CLIError(f"cannot load model {model_ref!r}: {msg}") from None
    except Exception as exc:
        raise CLIError(f"cannot load model {model_ref!r}: {_one_line(exc)}") from None
    missing = [k for k in (info or {}).get("missing_keys", []) if is_head_parameter(k)]
    if missing:
        raise CLIError(f"--model {model_ref} is not a trained sequence classifier: the checkpoint has no "
                       f"classification head ({', '.join(sorted(missing)[:3])} missing)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_ref, **kw)
    except Exception as exc:
        if _needs_remote_code(exc) and not trust_remote_code:
            raise _remote_code_error(tok_ref, tok_flag) from None
        raise CLIError(f"cannot load the tokenizer {tok_ref!r}: {_one_line(exc)}{_not_found_here(tok_ref)}"
                       + ("" if tokenizer_ref else " (pass --tokenizer)")) from None
    if getattr(tokenizer, "pad_token_id", None) is None:
        # decoder classifiers often ship without a padding token: pad with eos, as their classification heads expect
        eos = getattr(tokenizer, "eos_token", None)
        if eos is None:
            raise CLIError(f"the tokenizer {tok_ref!r} has no padding token and no eos token to pad with")
        tokenizer.pad_token = eos
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


# -------------------------------------------------------------------------------------------------------------
# commands
# -------------------------------------------------------------------------------------------------------------


def _set_threads(n: int | None) -> None:
    if n is None:
        return
    import torch

    if n < 1:
        raise CLIError(f"--threads must be >= 1, got {n}", code=2)
    torch.set_num_threads(n)


def _methods(value: str) -> list[str]:
    """``--methods`` as registered names: every ``module:factory`` entry is imported and registered first
    (:func:`attnfaith.study.factories.register_factory`)."""
    from attnfaith.study.factories import is_factory_reference, register_factory

    return [register_factory(v.strip()) if is_factory_reference(v) else v for v in value.split(",")]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from attnfaith.cli_data import map_labels, read_data
    from attnfaith.study import EvaluationConfig, PipelineError, run_evaluation
    from attnfaith.study.config import ERASURE_LEVELS, parse_list
    from attnfaith.study.registry import evaluator_names, method_names

    # usage problems first, before anything slow
    try:
        methods = parse_list(_methods(args.methods), method_names(), "method")
        evaluators = parse_list(args.evaluators, evaluator_names(), "evaluator")
        config = EvaluationConfig(
            methods=tuple(methods), evaluators=tuple(evaluators), layer=args.layer, batch_size=args.batch_size,
            seed=args.seed, max_length=args.max_length, permutations=args.permutations, ig_steps=args.ig_steps,
            n_random=args.n_random, adversarial_steps=args.adversarial_steps,
            variants_per_forward=args.variants_per_forward,
            erasure_levels=tuple(parse_list(args.erasure_levels, ERASURE_LEVELS, "erasure level")),
        )
    except PipelineError as exc:
        raise CLIError(str(exc), code=2) from None
    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit must be >= 1, got {args.limit}", code=2)
    if args.resume and args.overwrite:
        raise CLIError("--resume and --overwrite exclude each other", code=2)
    _set_threads(args.threads)
    device = resolve_device(args.device)
    out = Path(args.out)
    if not args.resume and not args.overwrite:
        for name in ("results.json", "partial.jsonl"):
            if (out / name).exists():
                raise CLIError(f"{out} already holds a run ({name}); pass --resume to continue it or --overwrite to "
                               "start again")

    t0 = time.perf_counter()
    try:
        ds, rationales, data_info = read_data(
            args.data, text_column=args.text_column, label_column=args.label_column, split=args.split,
            split_column=args.split_column, rationale_column=args.rationale_column,
            dataset_config=args.dataset_config, limit=args.limit, progress=not args.quiet)
    except PipelineError as exc:
        raise CLIError(str(exc)) from None
    t_data = time.perf_counter() - t0

    from attnfaith.progress import suppress_progress_bars

    t0 = time.perf_counter()
    with suppress_progress_bars() if args.quiet else contextlib.nullcontext():
        model, tokenizer = load_hf_classifier(args.model, args.tokenizer, revision=args.revision,
                                              trust_remote_code=args.trust_remote_code, dtype=args.dtype)
    try:
        labels = map_labels(ds, model, args.data, args.label_column) if ds.labels is not None else None
    except PipelineError as exc:
        raise CLIError(str(exc)) from None
    model.to(device)
    model.eval()
    t_model = time.perf_counter() - t0

    try:
        run = run_evaluation(
            model, tokenizer, ds.texts, labels, out_dir=out, config=config, rationales=rationales,
            resume=args.resume, overwrite=args.overwrite, progress=not args.quiet, model_source=args.model,
            data_info=data_info, figures=not args.no_figures,
            strict_methods=_explicit(args, "methods") or _explicit(args, "evaluators"),
            on_warning=_warn, extra_timings={"read_data_seconds": t_data, "load_model_seconds": t_model},
        )
    except PipelineError as exc:
        raise CLIError(str(exc)) from None
    _print_done(run, out, args.quiet)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from attnfaith.study import PipelineError
    from attnfaith.study.redraw import redraw_report

    try:
        run = redraw_report(args.dir, figures=not args.no_figures)
    except PipelineError as exc:
        raise CLIError(str(exc)) from None
    _print_done(run, Path(args.dir), False)
    return 0


def _explicit(args: argparse.Namespace, name: str) -> bool:
    return getattr(args, f"_explicit_{name}", False)


def _warn(message: str) -> None:
    """A one-line warning on stderr (the run goes on)."""
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def _print_done(run: dict, out: Path, quiet: bool) -> None:
    from attnfaith.study.report import summary_table

    print(summary_table(run))
    print()
    print(f"report: {out / 'report.md'}")


def cmd_demo(args: argparse.Namespace) -> int:
    from attnfaith.demo import run_demo

    _set_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in ("bert", "bilstm")]
    if bad or not models:
        raise CLIError(f"--models: unknown demo model(s) {', '.join(bad) or '(none)'}; choose bert and/or bilstm",
                       code=2)
    for name in ("n_train", "n_eval"):
        if getattr(args, name) < 4:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 4", code=2)
    try:
        result = run_demo(args.out, seed=args.seed, n_train=args.n_train, n_eval=args.n_eval, models=models,
                          quick=args.quick, progress=not args.quiet)
    except ValueError as exc:
        raise CLIError(_one_line(exc)) from None
    print(result["table"])
    print()
    print(f"report: {result['report']}")
    return 0


# -------------------------------------------------------------------------------------------------------------
# entry point
# -------------------------------------------------------------------------------------------------------------


def _mark_explicit(argv: Sequence[str], args: argparse.Namespace) -> None:
    for name in ("methods", "evaluators"):
        flag = f"--{name}"
        setattr(args, f"_explicit_{name}", any(a == flag or a.startswith(flag + "=") for a in argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 runtime error, 2 usage error, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("ATTNFAITH_DEBUG", "") not in ("", "0")
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help(sys.stderr)
            return 2
        _mark_explicit(argv, args)
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        out = None
        try:
            out = args.out  # type: ignore[possibly-undefined]
        except Exception:
            pass
        evaluating = getattr(args, "command", None) == "evaluate"  # type: ignore[possibly-undefined]
        hint = f"; finished chunks are saved in {out}: rerun with --resume to continue" if out and evaluating else ""
        print(f"\n{PROG}: interrupted{hint}", file=sys.stderr)
        return 130
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except Exception as exc:  # pragma: no cover - the safety net
        if debug:
            raise
        print(f"{PROG}: error: {type(exc).__name__}: {_one_line(exc)} (set ATTNFAITH_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
