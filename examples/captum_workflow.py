"""A Captum workflow, unchanged, benchmarked with attnfaith's decision-flip erasure (Serrano & Smith 2019).

Runs offline on a tiny random-weight BERT from :mod:`attnfaith.testing` (swap in any
``AutoModelForSequenceClassification`` and its tokenizer for real use):

1. Captum attributions built the usual way: ``LayerIntegratedGradients`` over the word embeddings (a forward on
   token ids) and ``Saliency`` / ``IntegratedGradients`` on an ``inputs_embeds`` forward wrapper;
2. passed, as they are, to :meth:`attnfaith.ErasureFlip.compare` next to the attention and random rankings;
3. the per-example tensors of the results fed back to ``captum.attr.visualization``.

    python examples/captum_workflow.py [--html out.html]
"""

from __future__ import annotations

import argparse

import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients, Saliency, visualization

from attnfaith import ErasureFlip
from attnfaith.testing import tiny_batch, tiny_model


def main(html_path: str | None = None, verbose: bool = True):
    model = tiny_model("bert", seed=3, std=0.4)
    enc = tiny_batch("bert", model, batch_size=6, seq_len=12, seed=1)
    input_ids, attention_mask = enc["input_ids"], enc["attention_mask"]

    # --- the Captum side, exactly as one writes it for a HuggingFace classifier ----------------------------------
    def forward_ids(ids, mask):
        return model(input_ids=ids, attention_mask=mask).logits

    def forward_embeds(embeds, mask):
        return model(inputs_embeds=embeds, attention_mask=mask).logits

    lig = LayerIntegratedGradients(forward_ids, model.get_input_embeddings())
    saliency = Saliency(forward_embeds)
    ig = IntegratedGradients(forward_embeds)

    # --- attnfaith: one table, the same inputs for every ranking ------------------------------------------------
    ef = ErasureFlip(model, level="token", erase="mask")
    table = ef.compare(
        input_ids,
        {"attention": "attention", "lig": lig, "ig": ig, "saliency": saliency, "random": "random"},
        additional_forward_args=(attention_mask,),
    )
    if verbose:
        print(table)

    # --- back to Captum: visualise the attributions the results hold --------------------------------------------
    res = table["lig"]
    records = []
    for b in range(len(res)):
        keep = res.items[b]
        words = res.scores[b][keep]
        words = words / words.abs().max().clamp_min(1e-12)
        tokens = [f"tok{int(i)}" for i in res.input_ids[b][keep]]
        records.append(
            visualization.VisualizationDataRecord(
                words,
                float(res.probability[b]),
                int(res.prediction[b]),
                int(res.prediction[b]),
                int(res.prediction[b]),
                float(res.scores[b][keep].sum()),
                tokens,
                None,
            )
        )
    rows = [
        f"<tr><td>{r.pred_class} ({r.pred_prob:.2f})</td>"
        f"<td>{visualization.format_word_importances(r.raw_input_ids, r.word_attributions)}</td></tr>"
        for r in records
    ]
    html = "<table>" + "".join(rows) + "</table>"
    if html_path:
        with open(html_path, "w") as f:
            f.write(html)
    return table, records, html


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", default=None, help="write the word-importance table to this HTML file")
    args = parser.parse_args()
    torch.manual_seed(0)
    main(args.html)
