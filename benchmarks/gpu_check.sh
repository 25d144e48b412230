#!/usr/bin/env bash
# The GPU check (issue 12, part 4): CUDA = CPU for every evaluator on three architectures, the benchmark cases on the
# device, SST-2 dev with MiniLM (time, peak memory), bf16 decisions against float32. Under 8 minutes on one GPU.
#
#   benchmarks/gpu_check.sh                      # --device cuda, full sizes; results in benchmarks/results/gpu_check/
#   benchmarks/gpu_check.sh --device cpu --small # the same steps on the CPU at small sizes (what the test runs)
#
# Options are those of benchmarks/gpu_check.py (--steps, --data, --out). PYTHON overrides the interpreter
# (default: the project's .venv). The data folder: --data, else $ATTNFAITH_DATA, else ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
exec "$PYTHON" benchmarks/gpu_check.py "$@"
