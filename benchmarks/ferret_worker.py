"""ferret-xai's ``taucorr_loo`` as a timed worker, run by the ferret virtual environment (``make ferret-env``).

ferret-xai 0.4.2 pins transformers < 5 and captum < 0.8, so it cannot share attnfaith's environment. run.py starts
this script with ``benchmarks/.venv-ferret/bin/python ferret_worker.py SPEC.json``; the spec names a model folder
(saved by run.py with ``save_pretrained``), the texts, the explanation scores of one or more methods (one score per
token, the same scores attnfaith ranks) and the targets. Then, for every line ``run`` on stdin, it evaluates every explanation with
``TauLOO_Evaluation`` (ferret recomputes the leave-one-out scores for every explanation) and answers one JSON line ``{"seconds": ..., "tau": [...]}``; ``quit`` ends it. run.py
alternates these runs with its own, so both timings come from the same run.
"""

import json
import sys
import time

import numpy as np
import torch


def main() -> None:
    spec = json.load(open(sys.argv[1]))
    torch.set_num_threads(int(spec.get("threads", torch.get_num_threads())))
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    from ferret.evaluators.faithfulness_measures import TauLOO_Evaluation
    from ferret.explainers.explanation import Explanation

    model = AutoModelForSequenceClassification.from_pretrained(spec["model"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    evaluator = TauLOO_Evaluation(model, tokenizer)
    # one explanation per text and method ("methods": {name: [scores per text]})
    explanations = []
    for method, per_text in spec["methods"].items():
        for text, scores, target in zip(spec["texts"], per_text, spec["targets"]):
            tokens = tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])
            explanations.append(Explanation(text, tokens, np.asarray(scores, dtype=np.float64), method, target))
    print(json.dumps({"ready": True, "versions": {"torch": torch.__version__,
                                                  "transformers": __import__("transformers").__version__,
                                                  "ferret": "0.4.2"}}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        start = time.perf_counter()
        taus = [float(evaluator.compute_evaluation(e, target=e.target).score) for e in explanations]
        print(json.dumps({"seconds": time.perf_counter() - start, "tau": taus}), flush=True)


if __name__ == "__main__":
    main()
