"""The command line on a model saved with ``save_pretrained``: build a tiny classifier and a 20-line CSV, then run
``attnfaith evaluate`` on them (the same as typing the command). Offline.

    python examples/evaluate_saved_model.py [WORK_DIR]
"""

import sys
from pathlib import Path

from attnfaith.cli import main
from attnfaith.demo import make_task, word_tokenizer
from attnfaith.testing import tiny_model

work = Path(sys.argv[1] if len(sys.argv) > 1 else "out/example-saved")
tokenizer = word_tokenizer()  # a word-level tokenizer built in code (no download)
model = tiny_model("bert", num_labels=2, vocab_size=len(tokenizer))  # random weights: replace with yours
model.save_pretrained(work / "model")
tokenizer.save_pretrained(work / "model")
make_task(20, seed=3).to_csv(work / "data.csv")  # columns: text, label, rationale

sys.exit(main([
    "evaluate", "--model", str(work / "model"), "--data", str(work / "data.csv"),
    "--text-column", "text", "--label-column", "label", "--rationale-column", "rationale",
    "--permutations", "20", "--ig-steps", "10", "--threads", "1", "--out", str(work / "run"), "--overwrite",
]))
