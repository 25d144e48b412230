"""Shared test setup (keep small)."""

import torch

# The test models are tiny: one intra-op thread is fastest, and on a busy 2-core machine OpenMP's thread pool makes
# each forward ~100x slower (0.3 s instead of 3 ms).
torch.set_num_threads(1)
