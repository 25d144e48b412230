"""ferret-xai's ``taucorr_loo`` as a timed worker, run by the ferret virtual environment (``make ferret-env``).

ferret-xai 0.4.2 pins transformers < 5 and captum < 0.8, so it cannot share attnfaith's environment. run.py starts
this script with ``benchmarks/.venv-ferret/bin/python ferret_worker.py SPEC.json``; the spec names a model folder
(saved by run.py with ``save_pretrained``), the texts, the explanation scores of one or more methods (one score per
token, the same scores attnfaith ranks) and the targets. Then, for every line ``run`` on stdin, it evaluates every explanation with
``TauLOO_Evaluation`` (ferret recomputes the leave-one-out scores for every explanation) and answers one JSON line ``{"seconds": ..., "tau": [...]}``; ``quit`` ends it. run.py
alternates these runs with its own, so both timings come from the same run.

``"evaluators": ["aopc_compr", "aopc_suff"]`` in the spec (default ``["taucorr_loo"]``) runs ferret's AOPC
comprehensiveness / sufficiency instead, with ``"evaluation_args"`` passed to ``compute_evaluation`` (e.g.
``{"only_pos": false, "removal_args": {"remove_tokens": true, "based_on": "perc", "thresholds": [...]}}``); the
answer then also holds ``"scores": {short name: [one score per explanation]}`` (run.py case 6, the ferret test).
Every answer has ``"forwards"``: the sequences through the model's forward in that run.
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
    from ferret.evaluators import faithfulness_measures as fm
    from ferret.evaluators.faithfulness_measures import TauLOO_Evaluation
    from ferret.explainers.explanation import Explanation

    model = AutoModelForSequenceClassification.from_pretrained(spec["model"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    evaluator = TauLOO_Evaluation(model, tokenizer)
    rows = [0]  # sequences through the model's forward in the current run (reported as "forwards")

    def count_rows(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        rows[0] += int(ids.shape[0]) if ids is not None and ids.dim() > 1 else 1

    model.register_forward_pre_hook(count_rows, with_kwargs=True)
    classes = {"taucorr_loo": TauLOO_Evaluation, "aopc_compr": fm.AOPC_Comprehensiveness_Evaluation,
               "aopc_suff": fm.AOPC_Sufficiency_Evaluation}
    chosen = {name: classes[name](model, tokenizer) for name in spec.get("evaluators", ["taucorr_loo"])}
    evaluation_args = spec.get("evaluation_args", {})
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
        rows[0] = 0
        if "evaluators" not in spec:
            taus = [float(evaluator.compute_evaluation(e, target=e.target).score) for e in explanations]
            print(json.dumps({"seconds": time.perf_counter() - start, "tau": taus, "forwards": rows[0]}), flush=True)
            continue
        scores = {name: [float(ev.compute_evaluation(e, target=e.target, **evaluation_args).score)
                         for e in explanations] for name, ev in chosen.items()}
        print(json.dumps({"seconds": time.perf_counter() - start, "scores": scores, "forwards": rows[0]}), flush=True)


if __name__ == "__main__":
    main()
