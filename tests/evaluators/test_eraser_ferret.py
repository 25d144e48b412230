"""Comprehensiveness and Sufficiency against ferret-xai 0.4.2's ``aopc_compr`` / ``aopc_suff`` on the same model,
texts and scores, once the definitions are aligned (docs/metrics.md, "ERASER against ferret").

ferret lives in its own virtual environment (``make ferret-env``: benchmarks/.venv-ferret; it pins transformers < 5)
and runs through benchmarks/ferret_worker.py. The alignment: ferret's ``"perc"`` bins are ``int(f · n)`` items
(``rounding="floor"`` here), skip a bin of 0 items and a bin whose top set equals the previous bin's (here: NaN, and
left out of the mean below); every score positive (ferret's default ``only_pos=True`` keeps only positive scores in
the top set, and ``only_pos=False`` raises in ferret 0.4.2 as soon as a bin holds two tokens: ``id_top_k == []`` on a
numpy array);
``remove_first_last=True`` drops [CLS] and [SEP] (our items); scores are distinct (ferret's ``argsort`` breaks ties
in no documented order). ``remove_tokens=True`` is ``erase="delete"``, ``False`` is ``erase="mask"``.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
import torch
from transformers import BertTokenizerFast

from attnfaith import Comprehensiveness, Sufficiency
from attnfaith.metrics import ERASER_FRACTIONS
from attnfaith.testing import tiny_model

ROOT = Path(__file__).resolve().parents[2]
FERRET_PY = ROOT / "benchmarks" / ".venv-ferret" / "bin" / "python"
pytestmark = pytest.mark.skipif(
    not FERRET_PY.exists(),
    reason=f"ferret environment missing ({FERRET_PY}): run `make ferret-env` (ferret-xai 0.4.2 pins transformers < 5)")

WORDS = ["good", "bad", "film", "plot", "great", "dull", "acting", "the", "a", "was", "not", "very", "story",
         "music", "scene", "long", "short", "funny", "sad", "end"]


def _ferret_scores(model_dir: Path, texts, scores, targets, remove_tokens: bool, tmp: Path) -> dict:
    spec = {"model": str(model_dir), "texts": texts, "targets": targets, "threads": 1, "methods": {"m": scores},
            "evaluators": ["aopc_compr", "aopc_suff"],
            "evaluation_args": {"only_pos": True, "remove_first_last": True,
                                "removal_args": {"remove_tokens": remove_tokens, "based_on": "perc",
                                                 "thresholds": list(ERASER_FRACTIONS)}}}
    path = tmp / f"spec_{remove_tokens}.json"
    path.write_text(json.dumps(spec))
    out = subprocess.run([str(FERRET_PY), str(ROOT / "benchmarks" / "ferret_worker.py"), str(path)],
                         input="run\nquit\n", capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return lines[-1]["scores"]


def _ferret_aligned(res) -> list[float]:
    """Our per-bin values averaged as ferret averages them: bins with at least one item, a bin with the same number
    of items as the last one kept (the same top set, scores being distinct) left out."""
    out = []
    for sizes, values in zip(res.sizes.tolist(), res.values.tolist()):
        kept, last = [], None
        for k, v in zip(sizes, values):
            if k > 0 and k != last:
                kept.append(v)
                last = k
        out.append(sum(kept) / len(kept))
    return out


@pytest.mark.parametrize("erase,remove_tokens", [("delete", True), ("mask", False)])
def test_comprehensiveness_and_sufficiency_equal_ferret(tmp_path, erase, remove_tokens):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    model = tiny_model("bert", num_labels=2, vocab_size=len(vocab), pad_token_id=0, seed=4, std=0.3).eval()
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 30))) for _ in range(8)]
    enc = tok(texts, padding=True, return_tensors="pt")
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(enc["input_ids"].shape, generator=g) + 0.01  # distinct and positive
    with torch.no_grad():
        pred = model(**enc).logits.argmax(-1).tolist()
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    real = enc["attention_mask"].bool()
    per_text = [scores[i][real[i]].tolist() for i in range(len(texts))]
    ferret = _ferret_scores(model_dir, texts, per_text, pred, remove_tokens, tmp_path)
    for cls, key in ((Comprehensiveness, "aopc_compr"), (Sufficiency, "aopc_suff")):
        res = cls(model, erase=erase, rounding="floor").evaluate(enc, scores, tokenizer=tok)
        n = res.n_items.tolist()
        assert res.sizes.tolist() == [[int(f * m) for f in ERASER_FRACTIONS] for m in n]  # ferret's int(f·n)
        ours = _ferret_aligned(res)
        assert ours == pytest.approx(ferret[key], abs=2e-6), (cls.__name__, ours, ferret[key])
