"""Compare every number of two attnfaith runs (``results.json`` files, or folders searched for them).

    python benchmarks/compare_runs.py OLD NEW [--rtol 0] [--atol 0] [--allow-added /config/layer ...]
    python benchmarks/compare_runs.py --replication OLD_RUN NEW_RUN [--rtol 1e-12]

Walks both JSON trees in parallel and reports each leaf that differs: a number outside ``atol + rtol·|old|``, a
string, a missing key or a different list length. Keys that describe the run rather than its results (timings,
versions, paths, hashes of the model and tokenizer, the device, the command line, start and finish times) are
skipped. ``--allow-added PATH`` accepts a key that only NEW has at that exact path (an option added by the change,
whose default reproduces OLD): it is listed, not counted. Exit status 0 when nothing differs, 1 otherwise. Used to
show that a refactoring changes no number (``make demo`` and the replication smoke runs before and after).

``--replication`` compares an ``attnfaith replicate`` output folder written before the recipe went through the
study runner (``results.json`` format 1: per-explanation arrays) with one written after (format 2: the study's
per-example records in ``evaluation/results.json``): both are projected onto the numbers they share
(:func:`replication_numbers`: model and training metrics, Table 2 per explanation, per test row τ against gradient
and leave-one-out, permutation median ΔTVD, single-weight JS and flips, fraction removed per erasure level and
ranking, uniform-attention TVD and flips, Wiegreffe & Pinter's checks, Serrano & Smith's findings), which are then
compared leaf by leaf. The training loss of each epoch is left out (it was the sum of the batches' losses, as Jain &
Wallace's code; it is now the mean per example). The rankings were renamed: ``gradient`` (∂p/∂α) → ``attention_gradient``,
``leave_one_out`` → ``loo``; format 2 adds the shares by sign to Table 2 and more rankings, which are not compared.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Iterator

#: keys whose values describe the run, not its numbers
SKIPPED_KEYS = frozenset({
    "timings", "versions", "path", "source", "name_or_path", "device", "figures", "weights_sha256", "sha256",
    "tokenizer", "out", "created", "notes", "seconds", "elapsed",
    # the replication recipe's (attnfaith replicate)
    "command", "started", "finished", "timings_s", "train_seconds",
})


def _results_files(root: Path) -> dict[str, Path]:
    if root.is_file():
        return {root.name: root}
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("results.json"))}


def differences(old: Any, new: Any, rtol: float, atol: float, where: str = "",
                allow_added: frozenset[str] = frozenset()) -> Iterator[str]:
    """Each place where ``new`` differs from ``old``, as ``"path: old != new"`` (a key only in ``new`` at a path in
    ``allow_added`` is not a difference)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if key in SKIPPED_KEYS or (key not in old and f"{where}/{key}" in allow_added):
                continue
            if key not in old or key not in new:
                yield f"{where}/{key}: only in {'new' if key in new else 'old'}"
                continue
            yield from differences(old[key], new[key], rtol, atol, f"{where}/{key}", allow_added)
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            yield f"{where}: length {len(old)} != {len(new)}"
            return
        for i, (a, b) in enumerate(zip(old, new)):
            yield from differences(a, b, rtol, atol, f"{where}[{i}]", allow_added)
    elif isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool):
        if math.isnan(old) and math.isnan(new):
            return
        if not abs(old - new) <= atol + rtol * abs(old):
            yield f"{where}: {old!r} != {new!r}"
    elif old != new:
        yield f"{where}: {old!r} != {new!r}"


#: format-1 ranking names → the study's method names
RANKING_NAMES = {"gradient": "attention_gradient", "leave_one_out": "loo"}
#: the columns of Table 2 that both formats have
TABLE2_KEYS = ("mean", "std", "sig_frac", "n")


def _table2_v1(summary: dict) -> dict:
    return {c: {k: row[k] for k in TABLE2_KEYS} for c, row in summary.items()}


def replication_numbers(run_dir: Path) -> dict[str, Any]:
    """The numbers a replication output folder holds in both formats (see the module docstring), per test row
    keyed by the row's index in the test split."""
    r = json.loads((run_dir / "results.json").read_text())
    fmt = r.get("attnfaith_replication")
    out: dict[str, Any] = {"data": r["data"], "model": r["model"]}
    wp_runs = r.get("wiegreffe_pinter", {}).get("seed_variance", {}).get("runs", [])
    uniform = r.get("wiegreffe_pinter", {}).get("uniform_training", {}).get("uniform", {})
    histories = [r["model"].get("train", {}).get("history", []), uniform.get("history", [])] + [
        run.get("history", []) for run in wp_runs]
    for epoch in (e for h in histories for e in h):
        epoch.pop("train_loss", None)  # summed over the epoch's batches before, a per-example mean since
    wp = json.loads(json.dumps(r.get("wiegreffe_pinter", {})))
    for run in wp.get("seed_variance", {}).get("runs", []):
        run["kendall"] = {ref: _table2_v1(t) for ref, t in run.get("kendall", {}).items()}
    out["wiegreffe_pinter"] = wp
    rows: dict[str, dict[str, Any]] = {}
    if fmt == 1:
        ev = r["evaluation"]
        out["table2"] = {e: {ref: _table2_v1(x["kendall"][ref]["summary"]) for ref in ("gradient", "loo")}
                         for e, x in ev["explanations"].items()}
        for i, row in enumerate(ev["indices"]):
            rec: dict[str, Any] = {"tau": {}, "erasure": {}}
            for e, x in ev["explanations"].items():
                for ref in ("gradient", "loo"):
                    rec["tau"][f"{ref}/{e}"] = [x["kendall"][ref]["tau"][i], x["kendall"][ref]["pvalue"][i]]
            sw = ev["explanations"]["attention"]["single_weight"]
            rec["single"] = [sw[k][i] for k in ("js_top", "js_random", "flip_top", "flip_random")]
            rec["permutation"] = ev["permutation"]["median_tvd"][i]
            for lv, section in ev["erasure"].items():
                rec["erasure"][lv] = {RANKING_NAMES.get(n, n): x["fraction_removed"][i]
                                      for n, x in section["rankings"].items()}
            rec["uniform"] = [ev["uniform_inference"]["tvd"][i], ev["uniform_inference"]["flipped"][i]]
            rows[str(row)] = rec
        single = r["findings"]["attention: top item flips"]
    elif fmt == 2:
        ev = r["evaluation"]
        out["table2"] = {e: {ref: _table2_v1(t) for ref, t in x.items()} for e, x in ev["table2"].items()}
        names = set(RANKING_NAMES.values()) | {"attention", "rollout", "random", "attention_x_gradient"}
        for st in ev["studies"]:
            study = json.loads((run_dir / st["folder"] / "results.json").read_text())
            for ex in study["examples"]:
                rec = rows.setdefault(str(ex["example_id"]), {"tau": {}, "erasure": {}})
                for ref, per in (ex.get("kendall") or {}).items():
                    for e in out["table2"]:
                        if e in per:
                            rec["tau"][f"{ref}/{e}"] = [per[e]["tau"], per[e]["p"]]
                if ex.get("single"):
                    sw = ex["single"]
                    rec["single"] = [sw["js_top"], sw["js_random"], sw["flip_top"], sw["flip_random"]]
                if ex.get("permutation"):
                    rec["permutation"] = ex["permutation"]["median_tvd"]
                for key, per in ex.items():
                    if key.startswith("erasure_"):
                        rec["erasure"][key[len("erasure_"):]] = {m: v["fraction_removed"] for m, v in per.items()
                                                                 if m in names}
                if ex.get("uniform"):
                    rec["uniform"] = [ex["uniform"]["tvd"], ex["uniform"]["flipped"]]
        single = r["findings"]["single_weight"]
    else:
        raise SystemExit(f"{run_dir}: not an attnfaith replicate output (attnfaith_replication = {fmt!r})")
    # Serrano & Smith's findings: the same keys in both formats, but the single-weight entry's name
    findings = {"single_weight": {k: single[k] for k in ("flip_top", "flip_random", "rarely_flips",
                                                        "share_delta_js_positive")}}
    for key, x in r["findings"].items():
        if key.startswith("erasure_"):
            findings[key] = {k: x[k] for k in ("n_common", "random_needs_most", "random_needs_most_all_flipped")}
    out["findings"] = findings
    out["rows"] = rows
    return out


def compare_replications(old: Path, new: Path, rtol: float, atol: float) -> int:
    """Print the differences between two replication folders' shared numbers; 0 when none."""
    a, b = replication_numbers(old), replication_numbers(new)
    if a["model"].get("gradient_detach_attention") is not None:
        b["model"].setdefault("gradient_detach_attention", a["model"]["gradient_detach_attention"])
    diffs = list(differences(a, b, rtol, atol))
    print(f"{old.name} → {new.name}: {sum(1 for _ in _leaves(a))} values compared, {len(diffs)} differ")
    for line in diffs[:20]:
        print(f"  {line}")
    return len(diffs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rtol", type=float, default=0.0)
    parser.add_argument("--atol", type=float, default=0.0)
    parser.add_argument("--allow-added", action="append", default=[], metavar="PATH",
                        help="a key only NEW has, at this path (e.g. /config/layer); repeatable")
    parser.add_argument("--replication", action="store_true",
                        help="OLD and NEW are attnfaith replicate output folders (or folders of them), compared on "
                             "the numbers both formats hold")
    args = parser.parse_args(argv)
    if args.replication:
        pairs = [(args.old, args.new)] if (args.old / "results.json").is_file() else [
            (d, args.new / d.name) for d in sorted(args.old.iterdir()) if (d / "results.json").is_file()]
        missing = [n for _, n in pairs if not (n / "results.json").is_file()]
        for n in missing:
            print(f"{n}: no results.json")
        return 1 if missing or sum(compare_replications(o, n, args.rtol, args.atol) for o, n in pairs) else 0
    allowed = frozenset(args.allow_added)
    old_files, new_files = _results_files(args.old), _results_files(args.new)
    if not old_files:
        parser.error(f"no results.json under {args.old}")
    n_diff = 0
    for name in sorted(set(old_files) | set(new_files)):
        if name not in old_files or name not in new_files:
            print(f"{name}: only in {'new' if name in new_files else 'old'}")
            n_diff += 1
            continue
        old = json.loads(old_files[name].read_text())
        new = json.loads(new_files[name].read_text())
        diffs = list(differences(old, new, args.rtol, args.atol, allow_added=allowed))
        added = [p for p in sorted(allowed) if _has(new, p) and not _has(old, p)]
        n_leaves = sum(1 for _ in _leaves(old))
        print(f"{name}: {n_leaves} values compared, {len(diffs)} differ"
              + (f" (added, allowed: {', '.join(added)})" if added else ""))
        for line in diffs[:20]:
            print(f"  {line}")
        n_diff += len(diffs)
    return 1 if n_diff else 0


def _has(obj: Any, path: str) -> bool:
    """Whether the dict path ``/a/b`` exists in ``obj``."""
    for key in path.strip("/").split("/"):
        if not isinstance(obj, dict) or key not in obj:
            return False
        obj = obj[key]
    return True


def _leaves(obj: Any) -> Iterator[Any]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key not in SKIPPED_KEYS:
                yield from _leaves(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _leaves(value)
    else:
        yield obj


if __name__ == "__main__":
    sys.exit(main())
