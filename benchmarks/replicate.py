#!/usr/bin/env python
"""Replicate Jain & Wallace (2019), Serrano & Smith (2019) and Wiegreffe & Pinter (2019) on a labelled text table.

    python benchmarks/replicate.py --data sst/sst_dataset.csv --split-column exp_split --min-tokens 6 \
        --encoder bilstm --out runs/sst_bilstm

trains the model, runs the faithfulness tests on the test split and writes ``results.json``, ``report.md`` and the
figures into ``--out``. A thin wrapper over :func:`attnfaith.replication.main`; ``--help`` lists the options, and
``docs/replication.md`` has the commands behind the published comparison.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

if __name__ == "__main__":
    import torch

    if "--threads" not in sys.argv:
        # one intra-op thread: on the shared 2-core machine two OpenMP threads made SST training ~5x slower (measured)
        torch.set_num_threads(int(os.environ.get("ATTNFAITH_THREADS", "1")))
    from attnfaith.replication import main

    sys.exit(main())
