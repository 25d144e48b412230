"""Generate ``docs/api.md`` from the docstrings of every public module, class and function of attnfaith.

    python docs/gen_api.py            # rewrite docs/api.md
    python docs/gen_api.py --check    # exit 1 if docs/api.md is out of date

A name is public when it is in its module's ``__all__``; it is documented once, in the module that defines it.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

MODULES = [
    ("attnfaith", "The package: the names most users need"),
    ("attnfaith.attention", "Attention access (the only code that knows architectures)"),
    ("attnfaith.attention.tap", None),
    ("attnfaith.attention.interventions", None),
    ("attnfaith.attention.prefix", None),
    ("attnfaith.attention.readout", None),
    ("attnfaith.attention.forward_args", None),
    ("attnfaith.attention.model_facts", None),
    ("attnfaith.nn", "Building blocks for custom models"),
    ("attnfaith.attr", "Token attributions"),
    ("attnfaith.attr._base", None),
    ("attnfaith.attr.attention", None),
    ("attnfaith.attr.gradient", None),
    ("attnfaith.attr.ig", None),
    ("attnfaith.attr.loo", None),
    ("attnfaith.evaluators", "Faithfulness evaluators"),
    ("attnfaith.evaluators._base", None),
    ("attnfaith.evaluators.result", None),
    ("attnfaith.evaluators.selection", None),
    ("attnfaith.evaluators.kendall", None),
    ("attnfaith.evaluators.permutation", None),
    ("attnfaith.evaluators.adversarial", None),
    ("attnfaith.evaluators.erasure", None),
    ("attnfaith.evaluators.erasure_results", None),
    ("attnfaith.evaluators.rankings", None),
    ("attnfaith.evaluators.single", None),
    ("attnfaith.evaluators.uniform", None),
    ("attnfaith.evaluators._variants", None),
    ("attnfaith.evaluators.eraser", None),
    ("attnfaith.evaluators.log_odds", None),
    ("attnfaith.evaluators.soft_eraser", None),
    ("attnfaith.evaluators.normalized_aopc", None),
    ("attnfaith.evaluators._topk", None),
    ("attnfaith.results", "Result helpers (strict JSON, markdown tables)"),
    ("attnfaith.seeding", "Per-example seeds"),
    ("attnfaith.metrics", "Metrics (pure torch functions)"),
    ("attnfaith.metrics.kendall", None),
    ("attnfaith.metrics.divergence", None),
    ("attnfaith.metrics.ranking", None),
    ("attnfaith.metrics.bins", None),
    ("attnfaith.metrics.eraser", None),
    ("attnfaith._inputs", "Input normalisation (what every `inputs=` accepts)"),
    ("attnfaith._state", None),
    ("attnfaith.perturb", "Perturbations"),
    ("attnfaith.engine", "Batching engine"),
    ("attnfaith.reference", "The papers' reference models, data, training and replication recipe (`attnfaith replicate`)"),
    ("attnfaith.reference.models", None),
    ("attnfaith.reference.data", None),
    ("attnfaith.reference.vocabulary", None),
    ("attnfaith.reference.preprocessing", None),
    ("attnfaith.reference.training", None),
    ("attnfaith.reference.vectors", None),
    ("attnfaith.reference.config", None),
    ("attnfaith.reference.splits", None),
    ("attnfaith.reference.datasets", None),
    ("attnfaith.reference.trained_model", None),
    ("attnfaith.reference.evaluation", None),
    ("attnfaith.reference.wiegreffe_pinter", None),
    ("attnfaith.reference.report", None),
    ("attnfaith.reference.figures", None),
    ("attnfaith.reference.replication", None),
    ("attnfaith.study", "The study: runner, registry, records, resume state, report and figures (`attnfaith evaluate`)"),
    ("attnfaith.study.config", None),
    ("attnfaith.study.registry", None),
    ("attnfaith.study.api", None),
    ("attnfaith.study.redraw", None),
    ("attnfaith.study.hf_data", None),
    ("attnfaith.study.factories", None),
    ("attnfaith.study.runner", None),
    ("attnfaith.study.records", None),
    ("attnfaith.study.checks", None),
    ("attnfaith.study.state", None),
    ("attnfaith.study.statistics", None),
    ("attnfaith.study.report", None),
    ("attnfaith.study.plots", None),
    ("attnfaith.study.builtin", "The built-in registrations"),
    ("attnfaith.study.builtin.methods", None),
    ("attnfaith._text", "Text encoding for the study (HuggingFace tokenizers and the reference vocabulary)"),
    ("attnfaith.demo", "The demo (`attnfaith demo`)"),
    ("attnfaith.cli", "Command line"),
    ("attnfaith.cli_data", None),
    ("attnfaith.progress", None),
    ("attnfaith.testing", "Tiny models for tests"),
    ("attnfaith.plain_loops", "Plain reference loops (the tests' oracles)"),
]

_METHODS_SHOWN = 12


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip()


def _sig(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _public_methods(cls) -> list[tuple[str, object]]:
    out = []
    for name, member in cls.__dict__.items():
        if name.startswith("_") and name != "__call__":
            continue
        func = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
        if isinstance(member, property):
            out.append((name, member))
        elif inspect.isfunction(func):
            out.append((name, func))
    return out


def _entry(qual: str, obj) -> list[str]:
    lines: list[str] = []
    if inspect.isclass(obj):
        bases = [b.__name__ for b in obj.__bases__ if b is not object]
        lines.append(f"### class `{qual}{_sig(obj)}`" + (f" ({', '.join(bases)})" if bases else ""))
        lines += ["", _doc(obj) or "*(no docstring)*", ""]
        members = _public_methods(obj)
        for name, member in members[:_METHODS_SHOWN]:
            if isinstance(member, property):
                first = (_doc(member).split("\n\n")[0] if member.__doc__ else "").replace("\n", " ")
                lines.append(f"* property `{name}`" + (f": {first}" if first else ""))
            else:
                first = _doc(member).split("\n\n")[0].replace("\n", " ")
                lines.append(f"* `{name}{_sig(member)}`" + (f": {first}" if first else ""))
        if members:
            lines.append("")
    elif callable(obj):
        lines += [f"### `{qual}{_sig(obj)}`", "", _doc(obj) or "*(no docstring)*", ""]
    else:
        text = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))  # no memory addresses: the output is reproducible
        lines += [f"### `{qual}`", "", f"`{text if len(text) < 200 else text[:197] + '...'}`", ""]
    return lines


def generate() -> str:
    out = ["# API reference", "",
           "Generated from the docstrings by `python docs/gen_api.py`; every name in a module's `__all__`, documented "
           "in the module that defines it. Definitions of the metrics: [metrics.md](metrics.md).", ""]
    seen: set[int] = set()
    toc: list[str] = []
    body: list[str] = []
    for modname, title in MODULES:
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        names = list(getattr(mod, "__all__", []))
        defined = []
        for name in names:
            obj = getattr(mod, name, None)
            if obj is None:
                continue
            home = getattr(obj, "__module__", modname)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and home != modname and any(
                    m == home for m, _ in MODULES):
                continue  # documented where it is defined
            if id(obj) in seen and (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            seen.add(id(obj))
            defined.append((name, obj))
        if not defined and title is None:
            continue
        anchor = modname.replace(".", "").replace("_", "")
        toc.append(f"* [`{modname}`](#{anchor})" + (f": {title}" if title else ""))
        body += [f"## `{modname}`", ""]
        first = _doc(mod).split("\n\n")[0]
        if first:
            body += [first, ""]
        if modname == "attnfaith":
            reexported = [n for n in names if getattr(getattr(mod, n, None), "__module__", modname) != modname]
            if reexported:
                body += ["Re-exported here: " + ", ".join(f"`{n}`" for n in reexported) + ".", ""]
        for name, obj in defined:
            body += _entry(f"{modname}.{name}" if modname != "attnfaith" else name, obj)
    return "\n".join(out + toc + [""] + body).rstrip() + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(__file__).resolve().parent / "api.md"
    text = generate()
    if "--check" in argv:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is out of date: run python docs/gen_api.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
