"""The measurement behind the CPU chunk policy (``attnfaith.engine.CPU_CHUNK_BYTES``).

    python benchmarks/chunk_policy.py [--caps 256,512,1024,2048,0] [--ppe 8,16,32] [--rounds 4]

LeaveOneOut(delete) on all-MiniLM-L6-v2 (16 examples × 48 real tokens, as benchmarks/run.py case 4) with the CPU cap
set to each of ``--caps`` tokens per forward (``CPU_CHUNK_BYTES = tokens × 16 · hidden``; 0: no cap, one chunk per
length bucket as the memory budget allows), alternated round by round with Captum's ``FeatureAblation`` at each
``--ppe`` (``perturbations_per_eval``). Prints, per round, the least time so far of each configuration, then the
medians.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import minilm_classifier, texts_batch  # noqa: E402

import attnfaith.engine as engine  # noqa: E402
from attnfaith import LeaveOneOut  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--caps", default="256,512,1024,2048,0")
    ap.add_argument("--ppe", default="8,16,32")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args(argv)
    from captum.attr import FeatureAblation

    model, tokenizer, source = minilm_classifier()
    hidden = model.config.hidden_size
    texts = texts_batch(16, 48, tokenizer=tokenizer)
    enc = tokenizer(texts, padding=True, return_tensors="pt", return_special_tokens_mask=True)
    B, T = enc["input_ids"].shape
    loo = LeaveOneOut(model)

    def forward(ids, mask):
        return torch.softmax(model(input_ids=ids, attention_mask=mask).logits, -1)

    ablation = FeatureAblation(forward)
    features = torch.arange(T).expand(B, T)

    def ours(tokens: int):
        def run():
            engine.CPU_CHUNK_BYTES = tokens * 16 * hidden if tokens else 1 << 62
            loo.attribute(enc)
        return run

    def captum(ppe: int):
        def run():
            with torch.no_grad():
                ablation.attribute(enc["input_ids"], baselines=0, target=0,
                                   additional_forward_args=(enc["attention_mask"],), feature_mask=features,
                                   perturbations_per_eval=ppe)
        return run

    fns = {f"attnfaith cap {c or 'none'}": ours(int(c)) for c in args.caps.split(",")}
    fns.update({f"Captum ppe={p}": captum(int(p)) for p in args.ppe.split(",")})
    default = engine.CPU_CHUNK_BYTES
    seconds: dict[str, list[float]] = {k: [] for k in fns}
    print(f"# {source}; inputs {B} × {T}; {torch.get_num_threads()} threads; load {os.getloadavg()[0]:.1f}")
    try:
        for rnd in range(args.rounds):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                seconds[name].append(time.perf_counter() - start)
            print(rnd, f"load {os.getloadavg()[0]:.1f}", {k: round(min(v), 2) for k, v in seconds.items()}, flush=True)
    finally:
        engine.CPU_CHUNK_BYTES = default
    print("| configuration | least (s) | median (s) |\n|---|---|---|")
    for name, v in seconds.items():
        print(f"| {name} | {min(v):.2f} | {statistics.median(v):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
