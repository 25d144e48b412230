"""``attnfaith evaluate`` as a library call: train Jain & Wallace's BiLSTM with attention on the demo's synthetic task
(planted sentiment markers, so the rationale is known) and write the full report. Offline, well under a minute.

    python examples/evaluate_in_python.py [OUT_DIR]
"""

import sys

import torch

from attnfaith.demo import make_task, train_demo_bilstm
from attnfaith import run_evaluation

torch.set_num_threads(1)  # tiny models: one thread is fastest
out = sys.argv[1] if len(sys.argv) > 1 else "out/example-bilstm"

train, dev, test = make_task(800, seed=0), make_task(60, seed=1), make_task(60, seed=2)
model, vocab, _ = train_demo_bilstm(train, dev, seed=0, epochs=3)

run = run_evaluation(
    model, vocab, test.texts, test.labels,  # a Vocabulary works as the tokenizer of the reference models
    methods="attention,gradient,ig,loo,random",
    evaluators="kendall,permutation,erasure,single,uniform",
    out_dir=out, overwrite=True, rationales=test.rationales,
    batch_size=30, permutations=50, ig_steps=20, progress=False,
)
for method, verdict in run["summary"]["verdicts"].items():
    print(f"{method}: {verdict}\n")
print(f"report: {out}/report.md")
