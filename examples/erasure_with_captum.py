"""The README's example: Serrano & Smith's erasure test for attention, Captum's integrated gradients and a random
baseline on a HuggingFace classifier. Runs offline on a tiny random model; put your own model and tokenizer output
in its place (``AutoModelForSequenceClassification.from_pretrained(...)``, ``tokenizer(texts, padding=True,
return_tensors="pt")``)."""

from captum.attr import LayerIntegratedGradients

from attnfaith import ErasureFlip
from attnfaith.testing import tiny_batch, tiny_model

model = tiny_model("bert", num_labels=2)  # any AutoModelForSequenceClassification
enc = tiny_batch("bert", model, batch_size=4)  # or: tokenizer(texts, padding=True, return_tensors="pt")
forward = lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits.softmax(-1)  # noqa: E731
lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
erasure = ErasureFlip(model, level="token")  # delete tokens in each ranking's order until the decision flips
print(erasure.compare(enc, {"attention": "attention", "integrated gradients": lig, "random": "random"}))
