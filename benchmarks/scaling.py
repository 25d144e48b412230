"""How the cost of each evaluator grows with the sequence length and with the number of examples.

    python benchmarks/scaling.py [--lengths 32,64,128,256,512] [--examples 1,2,4,8,16] [--repeats 1]
                                 [--figure docs/figures/scaling.png] [--out benchmarks/results/scaling.json] [--quick]

Every evaluator runs on a config-built random BERT (hidden 64, 2 layers, 4 heads, feed-forward 256, positions 520,
attnfaith.testing.tiny_model, SDPA attention), first at a fixed number of examples for each length (``--fixed-examples``,
default 2), then at a fixed length (``--fixed-length``, default 64) for each number of examples. Alongside run the
plain loop (one forward per variant, :func:`attnfaith.plain_loops.plain_erasure_flip`) and Captum's
``FeatureAblation`` (the leave-one-out scores, ``perturbations_per_eval=16``) + scipy's ``kendalltau``.

Each series' exponent is the least-squares slope of log(seconds) against log(length) or log(examples): cost ∝ T^k.
Token erasure with a full curve runs O(T) variants of length O(T) per example, so k ≈ 2 where the forwards dominate
(k → 3 once attention's T² dominates a forward, which a 64-wide model at 512 tokens does not reach); curve points at
ERASER's fixed fractions (``steps=``) run 5 variants per ranking and example, so k ≈ 1. The figure (log-log, one
panel per sweep) and a markdown table go to ``--figure`` and stdout; the raw timings to ``--out``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import attnfaith
from attnfaith import ErasureFlip, KendallTau, LeaveOneOut, PermutationTVD
from attnfaith.plain_loops import plain_erasure_flip
from attnfaith.testing import tiny_batch, tiny_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: ERASER's fractions (DeYoung et al. 2020): 1, 5, 10, 20, 50 % of the items
ERASER_STEPS = (0.01, 0.05, 0.1, 0.2, 0.5)


def scaling_model():
    """The random BERT every series runs on (hidden 64, 2 layers, 4 heads, FFN 256, 520 positions, vocab 1000)."""
    return tiny_model("bert", num_layers=2, hidden_size=64, intermediate_size=256, max_position_embeddings=520,
                      vocab_size=1000, attn_implementation="sdpa")


def inputs_for(model, n: int, length: int) -> dict[str, torch.Tensor]:
    """``n`` rows of exactly ``length`` tokens ([CLS] w.. [SEP]) with ``token_type_ids`` and the special-token mask."""
    enc = tiny_batch("bert", model, batch_size=n, seq_len=length, lengths=[length], seed=length * 1000 + n)
    ids = enc["input_ids"]
    special = torch.zeros_like(ids)
    special[:, 0] = 1
    special[:, -1] = 1
    return {**enc, "token_type_ids": torch.zeros_like(ids), "special_tokens_mask": special}


def series(model) -> dict[str, Callable[[dict, torch.Tensor], object]]:
    """name → fn(enc, scores): one evaluation of that kind on the inputs."""
    from captum.attr import FeatureAblation
    from scipy.stats import kendalltau

    token = ErasureFlip(model, level="token", erase="delete")
    token_steps = ErasureFlip(model, level="token", erase="delete", steps=ERASER_STEPS)
    attention = ErasureFlip(model, level="attention", layer=-1)
    perm = PermutationTVD(model, layer=-1, n_permutations=20)
    kendall = KendallTau(model, reference=LeaveOneOut(model))

    def forward(input_ids, attention_mask, token_type_ids):
        return torch.softmax(model(input_ids=input_ids, attention_mask=attention_mask,
                                   token_type_ids=token_type_ids).logits, dim=-1)

    ablation = FeatureAblation(forward)

    def captum_loo_tau(enc, scores):
        ids, mask = enc["input_ids"], enc["attention_mask"]
        B, T = ids.shape
        with torch.no_grad():
            pred = forward(ids, mask, enc["token_type_ids"]).argmax(-1)
            attr = ablation.attribute(ids, baselines=0, target=pred,
                                      additional_forward_args=(mask, enc["token_type_ids"]),
                                      feature_mask=torch.arange(T).expand(B, T), perturbations_per_eval=16)
        items = (mask.bool() & ~enc["special_tokens_mask"].bool()).numpy()
        a, r = scores.numpy(), attr.numpy()
        return [kendalltau(a[i][items[i]], r[i][items[i]]).statistic for i in range(B)]

    return {
        "ErasureFlip token, per item": lambda enc, s: token.evaluate(enc, s),
        "ErasureFlip token, ERASER steps": lambda enc, s: token_steps.evaluate(enc, s),
        "ErasureFlip attention, last layer": lambda enc, s: attention.evaluate(enc, s),
        "PermutationTVD, 20 permutations": lambda enc, s: perm.evaluate(enc),
        "LeaveOneOut + KendallTau": lambda enc, s: kendall.evaluate(enc, attributions=s),
        "plain loop: token erasure, per item": lambda enc, s: plain_erasure_flip(token, enc, s),
        "Captum FeatureAblation + scipy τ": captum_loo_tau,
    }


def timed(fn: Callable[[], object], repeats: int) -> float:
    """The least of ``repeats`` timed runs (after one untimed warm-up when ``repeats`` > 1): load only adds time."""
    if repeats > 1:
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def exponent(x: list[float], y: list[float]) -> float:
    """Least-squares slope of log(y) against log(x)."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def sweep(fns, model, points: list[tuple[int, int]], repeats: int) -> dict[str, list[float]]:
    """Seconds of every series at every ``(examples, length)`` point (progress on stderr)."""
    out: dict[str, list[float]] = {name: [] for name in fns}
    for n, length in points:
        enc = inputs_for(model, n, length)
        scores = torch.randn(n, length, generator=torch.Generator().manual_seed(n * 7919 + length))
        for name, fn in fns.items():
            out[name].append(timed(lambda: fn(enc, scores), repeats))
            print(f"  {name:40s} n={n:3d} T={length:4d}: {out[name][-1]:8.3f} s", file=sys.stderr, flush=True)
    return out


def draw(path: Path, lengths, by_length, examples, by_examples, fixed_examples: int, fixed_length: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.9), dpi=80)
    markers = "osD^v<>"
    for ax, x, data, xlabel in ((axes[0], lengths, by_length, f"tokens per example ({fixed_examples} examples)"),
                                (axes[1], examples, by_examples, f"examples ({fixed_length} tokens each)")):
        for i, (name, ys) in enumerate(data.items()):
            dashed = name.startswith(("plain", "Captum"))
            ax.plot(x, ys, marker=markers[i % len(markers)], ms=4, lw=1.2, ls="--" if dashed else "-",
                    label=f"{name} (k = {exponent(x, ys):.2f})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels([str(v) for v in x])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds")
        ax.grid(True, which="both", lw=0.3, alpha=0.5)
        ax.legend(fontsize=6, loc="upper left")
    axes[0].set_title("cost against length (fitted exponent k: cost ∝ T^k)", fontsize=8)
    axes[1].set_title("cost against examples (cost ∝ N^k)", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def table(lengths, by_length, examples, by_examples, fixed_examples: int, fixed_length: int) -> str:
    head = ("| series | " + " | ".join(f"T={t}" for t in lengths) + " | k (length) | "
            + " | ".join(f"N={n}" for n in examples) + " | k (examples) |")
    rule = "|---|" + "---|" * (len(lengths) + 1) + "---|" * (len(examples) + 1)
    rows = [f"seconds: length sweep at N = {fixed_examples} examples, example sweep at T = {fixed_length} tokens",
            "", head, rule]
    for name in by_length:
        a, b = by_length[name], by_examples[name]
        rows.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in a) + f" | {exponent(lengths, a):.2f} | "
                    + " | ".join(f"{v:.3f}" for v in b) + f" | {exponent(examples, b):.2f} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="32,64,128,256,512")
    ap.add_argument("--examples", default="1,2,4,8,16")
    ap.add_argument("--fixed-examples", type=int, default=2)
    ap.add_argument("--fixed-length", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "scaling.png"))
    ap.add_argument("--out", default=str(HERE / "results" / "scaling.json"))
    ap.add_argument("--quick", action="store_true", help="lengths 16,32 and examples 1,2: a smoke test")
    args = ap.parse_args(argv)
    if args.quick:
        args.lengths, args.examples, args.fixed_examples, args.fixed_length = "16,32", "1,2", 1, 16
    lengths = [int(v) for v in args.lengths.split(",")]
    examples = [int(v) for v in args.examples.split(",")]
    torch.manual_seed(0)
    model = scaling_model()
    fns = series(model)
    print(f"# attnfaith {attnfaith.__version__}, {datetime.datetime.now().isoformat(timespec='seconds')}, "
          f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; load "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    start = time.perf_counter()
    by_length = sweep(fns, model, [(args.fixed_examples, t) for t in lengths], args.repeats)
    by_examples = sweep(fns, model, [(n, args.fixed_length) for n in examples], args.repeats)
    text = table(lengths, by_length, examples, by_examples, args.fixed_examples, args.fixed_length)
    print(text)
    print(f"\n# {time.perf_counter() - start:.0f} s in all; load after {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    draw(Path(args.figure), lengths, by_length, examples, by_examples, args.fixed_examples, args.fixed_length)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "lengths": lengths, "examples": examples,
        "fixed_examples": args.fixed_examples, "fixed_length": args.fixed_length, "repeats": args.repeats,
        "by_length": by_length, "by_examples": by_examples,
        "exponents": {name: {"length": exponent(lengths, by_length[name]),
                             "examples": exponent(examples, by_examples[name])} for name in fns},
    }, indent=2))
    print(f"written: {args.figure}, {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
