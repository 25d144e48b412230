"""Compare every number of two attnfaith runs (``results.json`` files, or folders searched for them).

    python benchmarks/compare_runs.py OLD NEW [--rtol 0] [--atol 0] [--allow-added /config/layer ...]

Walks both JSON trees in parallel and reports each leaf that differs: a number outside ``atol + rtol·|old|``, a
string, a missing key or a different list length. Keys that describe the run rather than its results (timings,
versions, paths, hashes of the model and tokenizer, the device, the command line, start and finish times) are
skipped. ``--allow-added PATH`` accepts a key that only NEW has at that exact path (an option added by the change,
whose default reproduces OLD): it is listed, not counted. Exit status 0 when nothing differs, 1 otherwise. Used to
show that a refactoring changes no number (``make demo`` and the replication smoke runs before and after).
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rtol", type=float, default=0.0)
    parser.add_argument("--atol", type=float, default=0.0)
    parser.add_argument("--allow-added", action="append", default=[], metavar="PATH",
                        help="a key only NEW has, at this path (e.g. /config/layer); repeatable")
    args = parser.parse_args(argv)
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
