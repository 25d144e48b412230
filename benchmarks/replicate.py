#!/usr/bin/env python
"""``attnfaith replicate`` from a checkout without installing (kept for the commands of older notes).

    python benchmarks/replicate.py --data sst/sst_dataset.csv --split-column exp_split --min-tokens 6 \\
        --encoder bilstm --out runs/sst_bilstm

is ``attnfaith replicate ...`` (:mod:`attnfaith.reference.replication`); ``docs/replication.md`` has the commands
behind the published comparison.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

if __name__ == "__main__":
    from attnfaith.cli import main

    sys.exit(main(["replicate", *sys.argv[1:]]))
