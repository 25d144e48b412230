"""The evaluation pipeline behind ``attnfaith evaluate`` and ``attnfaith demo``, as a library function.

:func:`run_evaluation` takes a model, its tokenizer and texts, runs the chosen attribution methods and evaluators on
chunks of examples, appends each finished chunk to ``DIR/partial.jsonl`` (so an interrupted run resumes without
recomputing finished chunks), then assembles ``DIR/results.json`` and, through :mod:`attnfaith.report` and
:mod:`attnfaith.plots`, ``DIR/report.md`` and ``DIR/figures/*.png``.

Methods (token attributions, one score per token; see ``docs/metrics.md``):

==========  ====================================================================================================
attention   :class:`attnfaith.AttentionAttribution` ``(model, layer)``: the layer's attention (mean over heads) of
            the query row the classifier reads ([CLS] / first real token; the last real token for decoder and
            encoder-decoder classifiers)
rollout     :class:`attnfaith.AttentionRollout` (Abnar & Zuidema 2020), same query row
gradient    :class:`attnfaith.attr.gradient.GradientImportance`: ``|∇ŷ·e|`` (Jain & Wallace's gradient measure)
ig          :class:`attnfaith.attr.ig.EmbeddingIntegratedGradients` (Captum ``LayerIntegratedGradients`` over the
            token embedding, pad-token baseline)
loo         :class:`attnfaith.attr.loo.LeaveOneOut`: TVD of the output when the token is deleted (Jain & Wallace)
random      seeded ``U[0, 1)`` scores: the first of the Serrano & Smith random orders that the erasure test uses
==========  ====================================================================================================

Evaluators:

* ``kendall``: :class:`attnfaith.KendallTau` of every method against the references ``loo`` and ``gradient`` (when
  they are among the methods); attention vs gradient / leave-one-out are Jain & Wallace's Table 2.
* ``permutation``: :class:`attnfaith.PermutationTVD` of the layer's attention (median ΔTVD over permutations).
* ``erasure``: :class:`attnfaith.ErasureFlip` for every method at ``level="token"``, ``erase="delete"`` (the
  tokens leave the input: every method on an equal footing), and at ``level="attention"`` (the method's ranking
  decides which attention weights of the layer are zeroed and renormalised: Serrano & Smith's setting). The random
  method uses Serrano & Smith's five seeded random orders.
* ``single``: :class:`attnfaith.SingleWeightErasure` (Serrano & Smith §4): top attention weight vs a random one.
* ``uniform``: :class:`attnfaith.UniformAttention` (Wiegreffe & Pinter's uniform-attention baseline, per example).
* ``adversarial``: :class:`attnfaith.AdversarialAttention` (Jain & Wallace §4.3): expensive, off by default.

Chunks: ``batch_size`` examples each, in order; chunk ``c`` uses the seed ``seed + c`` for every random choice, so a
run with one chunk reproduces direct calls of the evaluators with ``seed=seed``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from attnfaith._inputs import call_model, prepare_batch, probs_of
from attnfaith._text import Encoded, VocabularyTokenizer, encode_texts
from attnfaith.results import json_number, json_numbers

__all__ = [
    "METHODS",
    "EVALUATORS",
    "DEFAULT_METHODS",
    "DEFAULT_EVALUATORS",
    "ATTENTION_METHODS",
    "KENDALL_REFERENCES",
    "EvaluationConfig",
    "PipelineError",
    "RunExistsError",
    "run_evaluation",
    "load_state",
    "parse_list",
]

METHODS = ("attention", "rollout", "gradient", "ig", "loo", "random")
EVALUATORS = ("kendall", "permutation", "erasure", "single", "uniform", "adversarial")
DEFAULT_METHODS = METHODS
DEFAULT_EVALUATORS = ("kendall", "permutation", "erasure", "single", "uniform")
#: methods read from the attention weights (compared against the references in Jain & Wallace's Table 2)
ATTENTION_METHODS = ("attention", "rollout")
#: Kendall τ references, in the order of the report's columns
KENDALL_REFERENCES = ("loo", "gradient")
#: evaluators that test the model's own attention (need a reachable attention layer)
ATTENTION_EVALUATORS = ("permutation", "single", "uniform", "adversarial")

STATE_FILE = "partial.jsonl"
RESULTS_FILE = "results.json"
STATE_FORMAT = "attnfaith.partial/1"
RESULTS_FORMAT = "attnfaith.results/1"


class PipelineError(ValueError):
    """A problem with the inputs of an evaluation run, reported to the user as one line."""


class RunExistsError(PipelineError):
    """The output folder already holds a run (and neither resume nor overwrite was asked for)."""


def parse_list(value: str | Sequence[str] | None, allowed: Sequence[str], what: str) -> list[str]:
    """A comma-separated list (or a sequence) of names from ``allowed``, in ``allowed``'s order, without duplicates.

    ``PipelineError`` naming the unknown entries.
    """
    if value is None:
        return []
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    items = [v for v in items if v]
    if not items:
        raise PipelineError(f"no {what} given; choose from {', '.join(allowed)}")
    unknown = [v for v in items if v not in allowed]
    if unknown:
        raise PipelineError(
            f"unknown {what} {', '.join(map(repr, unknown))}; choose from {', '.join(allowed)}"
        )
    return [a for a in allowed if a in items]


@dataclass
class EvaluationConfig:
    """Everything that determines the numbers of a run (stored in ``results.json``; ``--resume`` checks it).

    Attributes:
        methods, evaluators: names from :data:`METHODS` / :data:`EVALUATORS`.
        layer: the attention layer (call order; ``-1`` the last) read by ``attention`` and tested by the attention
            evaluators.
        batch_size: examples per chunk (one forward of the originals; the variants of a chunk run in forwards of
            ``variants_per_forward``).
        seed: base seed (chunk ``c`` uses ``seed + c``).
        max_length: tokenizer truncation.
        permutations: permutations per example (Jain & Wallace: 100).
        ig_steps: integration steps of integrated gradients.
        n_random: random orders for the random erasure baseline (Serrano & Smith: 5).
        adversarial_steps: Adam steps of the adversarial search (Jain & Wallace: 500).
        variants_per_forward: variants per forward (Captum's ``max_examples_per_batch``); None: from memory.
        erasure_levels: ``("token", "attention")`` by default.
    """

    methods: tuple[str, ...] = DEFAULT_METHODS
    evaluators: tuple[str, ...] = DEFAULT_EVALUATORS
    layer: int = -1
    batch_size: int = 16
    seed: int = 0
    max_length: int = 128
    permutations: int = 100
    ig_steps: int = 50
    n_random: int = 5
    adversarial_steps: int = 500
    variants_per_forward: int | None = None
    erasure_levels: tuple[str, ...] = ("token", "attention")

    def __post_init__(self) -> None:
        self.methods = tuple(parse_list(list(self.methods), METHODS, "method"))
        self.evaluators = tuple(parse_list(list(self.evaluators), EVALUATORS, "evaluator"))
        self.erasure_levels = tuple(parse_list(list(self.erasure_levels), ("token", "attention"), "erasure level"))
        for name in ("batch_size", "max_length", "permutations", "ig_steps", "n_random"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PipelineError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if isinstance(self.adversarial_steps, bool) or not isinstance(self.adversarial_steps, int) \
                or self.adversarial_steps < 0:
            raise PipelineError(f"adversarial-steps must be a non-negative integer, got {self.adversarial_steps!r}")
        if self.variants_per_forward is not None and (not isinstance(self.variants_per_forward, int)
                                                      or self.variants_per_forward < 1):
            raise PipelineError(f"variants-per-forward must be a positive integer, got {self.variants_per_forward!r}")
        if isinstance(self.layer, bool) or not isinstance(self.layer, int):
            raise PipelineError(f"layer must be an integer, got {self.layer!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise PipelineError(f"seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "methods": list(self.methods),
            "evaluators": list(self.evaluators),
            "layer": self.layer,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "max_length": self.max_length,
            "permutations": self.permutations,
            "ig_steps": self.ig_steps,
            "n_random": self.n_random,
            "adversarial_steps": self.adversarial_steps,
            "variants_per_forward": self.variants_per_forward,
            "erasure_levels": list(self.erasure_levels),
        }


# -------------------------------------------------------------------------------------------------------------
# small helpers
# -------------------------------------------------------------------------------------------------------------


def data_fingerprint(texts: Sequence[str], labels: Sequence[int] | None, rationales=None) -> str:
    h = hashlib.sha256()
    for i, t in enumerate(texts):
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
        if labels is not None:
            h.update(str(labels[i]).encode())
        if rationales is not None:
            h.update(json.dumps(list(rationales[i])).encode())
        h.update(b"\x01")
    return h.hexdigest()[:16]


def versions() -> dict[str, str]:
    """Versions of Python, attnfaith and the libraries the numbers depend on."""
    import numpy

    import attnfaith

    out = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "attnfaith": attnfaith.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }
    for name in ("transformers", "captum", "scipy", "tokenizers"):
        mod = sys.modules.get(name)
        if mod is None:
            try:
                mod = __import__(name)
            except Exception:  # pragma: no cover
                continue
        out[name] = getattr(mod, "__version__", "?")
    return out


def model_description(model: nn.Module, source: str | None = None) -> dict[str, Any]:
    """What ``results.json`` records about the model (class, config, size, versions)."""
    config = getattr(model, "config", None)
    info: dict[str, Any] = {
        "source": source,
        "class": type(model).__name__,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", "") if any(True for _ in model.parameters())
        else None,
    }
    if config is not None:
        info.update({
            "model_type": getattr(config, "model_type", None),
            "name_or_path": getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None),
            "commit_hash": getattr(config, "_commit_hash", None),
            "transformers_version": getattr(config, "transformers_version", None),
            "num_labels": getattr(config, "num_labels", None),
            "id2label": {str(k): v for k, v in (getattr(config, "id2label", None) or {}).items()},
            "num_hidden_layers": getattr(config, "num_hidden_layers", None),
        })
    else:
        info["num_labels"] = getattr(model, "num_labels", None)
    return info


def num_labels_of(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    n = getattr(config, "num_labels", None) if config is not None else getattr(model, "num_labels", None)
    return int(n) if isinstance(n, int) else None


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf → None, tuples → lists and numpy / torch scalars → Python numbers (strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return _json_safe(obj.item())
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return _json_safe(obj.item())
    except ImportError:  # pragma: no cover
        pass
    return str(obj)


def _end_with_newline(path: Path) -> None:
    """Terminate a torn last line (a run killed while appending) so the next record starts on its own line."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -------------------------------------------------------------------------------------------------------------
# state file
# -------------------------------------------------------------------------------------------------------------


def load_state(out_dir: str | os.PathLike) -> tuple[dict | None, dict[int, dict]]:
    """``(header, {chunk index: chunk record})`` from ``DIR/partial.jsonl``; a torn last line is ignored."""
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        return None, {}
    header = None
    chunks: dict[int, dict] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # interrupted while writing this line: that chunk is recomputed
            if rec.get("kind") == "header":
                header = rec
            elif rec.get("kind") == "chunk":
                chunks[int(rec["index"])] = rec
    return header, chunks


def _fingerprint(run: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a run that must match for ``--resume``."""
    return {
        "config": run["config"],
        "data_fingerprint": run["data"]["fingerprint"],
        "n_examples": run["data"]["n_examples"],
        "model": {k: run["model"].get(k) for k in ("source", "class", "parameters", "num_labels")},
    }


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


# -------------------------------------------------------------------------------------------------------------
# methods
# -------------------------------------------------------------------------------------------------------------


class _Methods:
    """Builds and runs the attribution methods on one chunk."""

    def __init__(self, model: nn.Module, config: EvaluationConfig, query: str, skip: Mapping[str, str]) -> None:
        from attnfaith.attr import AttentionAttribution, AttentionRollout
        from attnfaith.attr.gradient import GradientImportance
        from attnfaith.attr.ig import EmbeddingIntegratedGradients
        from attnfaith.attr.loo import LeaveOneOut

        self.config = config
        self.objects: dict[str, Any] = {}
        vpf = config.variants_per_forward
        for m in config.methods:
            if m in skip:
                continue
            if m == "attention":
                self.objects[m] = AttentionAttribution(model, layer=config.layer, query=query)
            elif m == "rollout":
                self.objects[m] = AttentionRollout(model, query=query)
            elif m == "gradient":
                self.objects[m] = GradientImportance(model)
            elif m == "ig":
                self.objects[m] = EmbeddingIntegratedGradients(model, n_steps=config.ig_steps,
                                                               internal_batch_size=vpf)
            elif m == "loo":
                self.objects[m] = LeaveOneOut(model, "delete", max_examples_per_batch=vpf)
            elif m == "random":
                self.objects[m] = None

    def scores(self, name: str, batch, seed: int) -> torch.Tensor:
        if name == "random":
            from attnfaith.metrics import random_scores

            # the first of the random orders ErasureFlip draws with this seed (rankings.resolve_ranking)
            g = torch.Generator().manual_seed(int(seed))
            return random_scores(batch.items.detach().to("cpu"), generator=g).to(batch.device)
        return self.objects[name].attribute_batch(batch, None).detach().float()


def _probe(model: nn.Module, enc: Encoded, config: EvaluationConfig) -> tuple[str, dict[str, str], list[str]]:
    """Check, on the first example, which methods and evaluators apply to the model.

    Returns ``(query, skipped, notes)``: the query row for the attention methods, ``{name: reason}`` of what cannot
    run, and notes for the report.
    """
    from attnfaith.attention import AttentionTap, AttentionUnreachableError
    from attnfaith.evaluators.rankings import auto_query

    one = {k: v[:1] for k, v in enc.inputs.items()}
    batch = prepare_batch(model, one, device=_device_of(model))
    skipped: dict[str, str] = {}
    notes: list[str] = []
    query = "cls"
    try:
        with torch.no_grad(), AttentionTap(model, capture=None) as tap:
            call_model(model, batch)
        layers = tap.layers
        if not layers:
            raise AttentionUnreachableError("the tap found no attention layer")
        n = len(layers)
        if not -n <= config.layer < n:
            raise PipelineError(f"--layer {config.layer} is out of range: the model has {n} attention layers "
                                f"(use 0..{n - 1} or -1..-{n})")
        query = auto_query(layers, [config.layer % n])
    except AttentionUnreachableError as exc:
        reason = f"no attention layer reachable ({exc})"
        for name in ATTENTION_METHODS:
            skipped[name] = reason
        for name in ATTENTION_EVALUATORS:
            skipped[name] = reason
        skipped["erasure:attention"] = reason
        layers = ()
    if "rollout" in config.methods and "rollout" not in skipped:
        T = batch.length
        if not any(l.kind == "self" for l in layers):
            skipped["rollout"] = "the model has no self-attention layer over the input tokens to roll out"
        else:
            from attnfaith.attr import AttentionRollout

            try:
                AttentionRollout(model, query=query).attribute_batch(batch)
            except ValueError as exc:
                skipped["rollout"] = str(exc).replace("model: ", "")
    for name in ("gradient", "ig"):
        if name in config.methods:
            try:
                from attnfaith.attr.gradient import input_embedding_module

                input_embedding_module(model)
            except TypeError as exc:
                skipped[name] = str(exc)
    return query, skipped, notes


# -------------------------------------------------------------------------------------------------------------
# per-chunk evaluation
# -------------------------------------------------------------------------------------------------------------


def _items_list(mask_row: torch.Tensor) -> list[int]:
    return mask_row.nonzero().flatten().tolist()


def _precision_at_k(scores: torch.Tensor, items: torch.Tensor, gold: torch.Tensor) -> float | None:
    """Share of the ``k = |gold|`` top-scored items (ties: lower position) that are gold; None without gold."""
    from attnfaith.metrics import topk_mask

    k = int((gold & items).sum())
    if k == 0:
        return None
    top = topk_mask(scores[None].float(), k, items[None])[0]
    return float((top & gold).sum()) / k


def _erasure_record(res, b: int) -> dict[str, Any]:
    n = int(res.n_items[b])
    curve = json_numbers(res.curve[b, : n + 1])
    return {
        "fraction_removed": json_number(res.fraction_removed[b]),
        "n_removed": json_number(res.n_removed[b]),
        "flipped": bool(res.flipped[b]),
        "aopc": json_number(res.aopc[b]),
        "curve": curve,
    }


class _ChunkRunner:
    def __init__(self, model: nn.Module, tokenizer: Any, config: EvaluationConfig, query: str,
                 skipped: Mapping[str, str], progress: bool, n_total: int, done: int) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.query = query
        self.skipped = dict(skipped)
        self.methods = [m for m in config.methods if m not in skipped]
        self.evaluators = [e for e in config.evaluators if e not in skipped]
        self.method_objects = _Methods(model, config, query, skipped)
        self.bars: dict[str, Any] = {}
        self.lines = progress and not _isatty(sys.stderr)
        self.n_total = n_total
        self.n_done = done
        if progress and not self.lines:
            from tqdm.auto import tqdm

            stages = [f"method {m}" for m in self.methods] + [f"evaluator {e}" for e in self.evaluators]
            width = max(len(s) for s in stages) if stages else 10
            for pos, stage in enumerate(stages):
                self.bars[stage] = tqdm(total=n_total, initial=done, desc=stage.ljust(width), position=pos,
                                        leave=True, unit="ex", dynamic_ncols=True, file=sys.stderr)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()

    def chunk_done(self, index: int, n_chunks: int, n: int, seconds: float) -> None:
        """One line per finished chunk when stderr is not a terminal (logs), instead of the bars."""
        self.n_done += n
        if self.lines:
            print(f"attnfaith: chunk {index + 1}/{n_chunks} done: {self.n_done}/{self.n_total} examples "
                  f"({seconds:.1f} s)", file=sys.stderr, flush=True)

    def _tick(self, stage: str, n: int) -> None:
        bar = self.bars.get(stage)
        if bar is not None:
            bar.update(n)

    def run(self, index: int, indices: Sequence[int], texts: Sequence[str], labels: Sequence[int] | None,
            rationales: Sequence[Sequence[int]] | None) -> dict[str, Any]:
        from attnfaith._state import model_guard

        config = self.config
        model = self.model
        seed = config.seed + index
        vpf = config.variants_per_forward
        timings: dict[str, float] = {}
        enc = encode_texts(self.tokenizer, texts, config.max_length)
        inputs = enc.inputs
        device = _device_of(model)
        batch = prepare_batch(model, inputs, device=device)
        B = batch.size
        items = batch.items.cpu()

        with model_guard(model), torch.no_grad():
            t0 = time.perf_counter()
            probs = probs_of(call_model(model, batch)).float().cpu()
            timings["forward"] = time.perf_counter() - t0
        pred = probs.argmax(-1)

        examples: list[dict[str, Any]] = []
        for b in range(B):
            pos = _items_list(items[b])
            rec: dict[str, Any] = {
                "index": int(indices[b]),
                "text": texts[b],
                "label": None if labels is None else int(labels[b]),
                "prediction": int(pred[b]),
                "probability": json_number(probs[b, pred[b]]),
                "probs": json_numbers(probs[b]),
                "n_tokens": len(pos),
                "tokens": [enc.tokens[b][p] for p in pos],
            }
            if labels is not None:
                rec["correct"] = bool(int(labels[b]) == int(pred[b]))
            examples.append(rec)

        # gold rationale (token level, over the items)
        gold = None
        if rationales is not None and enc.word_ids is not None:
            gold = torch.zeros_like(items)
            for b in range(B):
                words = set(int(w) for w in rationales[b])
                for p in range(items.shape[1]):
                    w = enc.word_ids[b][p] if p < len(enc.word_ids[b]) else None
                    if w is not None and w in words and bool(items[b, p]):
                        gold[b, p] = True
                examples[b]["rationale"] = [i for i, p in enumerate(_items_list(items[b])) if bool(gold[b, p])]

        # ---- attribution methods
        scores: dict[str, torch.Tensor] = {}
        for m in self.methods:
            t0 = time.perf_counter()
            scores[m] = self.method_objects.scores(m, batch, seed)
            timings[f"method:{m}"] = time.perf_counter() - t0
            s_cpu = scores[m].cpu()
            for b in range(B):
                pos = _items_list(items[b])
                examples[b].setdefault("scores", {})[m] = json_numbers(s_cpu[b, pos])
                if gold is not None:
                    examples[b].setdefault("rationale_precision", {})[m] = _precision_at_k(s_cpu[b], items[b], gold[b])
            self._tick(f"method {m}", B)

        # ---- evaluators
        from attnfaith.evaluators import (
            AdversarialAttention, ErasureFlip, KendallTau, PermutationTVD, SingleWeightErasure,
        )

        has_items = bool((items.sum(-1) > 0).all())
        for e in self.evaluators:
            t0 = time.perf_counter()
            if e == "kendall":
                for ref in KENDALL_REFERENCES:
                    if ref not in scores:
                        continue
                    kt = KendallTau(model, reference=scores[ref], max_examples_per_batch=vpf)
                    for m in self.methods:
                        if m == ref:
                            continue
                        res = kt.evaluate(inputs, attributions=scores[m])
                        for b in range(B):
                            examples[b].setdefault("kendall", {}).setdefault(ref, {})[m] = {
                                "tau": json_number(res.tau[b]), "p": json_number(res.pvalue[b]),
                            }
            elif e == "permutation":
                res = PermutationTVD(model, layer=config.layer, n_permutations=config.permutations, seed=seed,
                                     max_examples_per_batch=vpf).evaluate(inputs)
                for b in range(B):
                    examples[b]["permutation"] = {
                        "median_tvd": json_number(res.median[b]), "max_tvd": json_number(res.max[b]),
                        "mean_tvd": json_number(res.tvd[b].double().mean()),
                        "max_attention": json_number(res.max_attention[b]),
                    }
            elif e == "erasure" and has_items:
                for level in config.erasure_levels:
                    if level == "attention" and "erasure:attention" in self.skipped:
                        continue
                    ef = ErasureFlip(model, level=level, layer=config.layer, erase="delete", n_random=config.n_random,
                                     seed=seed, max_examples_per_batch=vpf)
                    for m in self.methods:
                        attr = "random" if m == "random" else scores[m]
                        res = ef.evaluate(inputs, attributions=attr, name=m)
                        for b in range(B):
                            examples[b].setdefault(f"erasure_{level}", {})[m] = _erasure_record(res, b)
            elif e == "single" and has_items:
                res = SingleWeightErasure(model, layer=config.layer, seed=seed,
                                          max_examples_per_batch=vpf).evaluate(inputs, "attention")
                for b in range(B):
                    examples[b]["single"] = {
                        "js_top": json_number(res.js_top[b]), "js_random": json_number(res.js_random[b]),
                        "delta_js": json_number(res.delta_js[b]), "flip_top": bool(res.flip_top[b]),
                        "flip_random": bool(res.flip_random[b]), "has_random": bool(res.has_random[b]),
                        "top_item": _item_rank(items[b], int(res.top_index[b])),
                        "random_item": _item_rank(items[b], int(res.random_index[b])),
                    }
            elif e == "uniform":
                _run_uniform(model, inputs, None if labels is None else list(labels), vpf, examples)
            elif e == "adversarial":
                res = AdversarialAttention(model, layer=config.layer, steps=config.adversarial_steps, seed=seed,
                                           max_examples_per_batch=vpf).evaluate(inputs)
                for b in range(B):
                    examples[b]["adversarial"] = {
                        "jsd": json_number(res.jsd[b]),
                        "tvd": json_number(res.tvd[b]), "max_attention": json_number(res.max_attention[b]),
                    }
            timings[f"evaluator:{e}"] = time.perf_counter() - t0
            self._tick(f"evaluator {e}", B)
        return {"kind": "chunk", "index": index, "seed": seed, "examples": examples, "timings": timings}


def _item_rank(items_row: torch.Tensor, position: int) -> int | None:
    """Index among the items of the token at ``position`` (None for −1)."""
    if position < 0:
        return None
    return int(items_row[:position].sum())


def _run_uniform(model, inputs, labels, vpf, examples: list[dict]) -> None:
    from attnfaith.evaluators import UniformAttention

    # Wiegreffe & Pinter's baseline: every attention layer uniform (the evaluator's default, layers="all")
    res = UniformAttention(model, max_examples_per_batch=vpf).evaluate(inputs, labels=labels)
    for b in range(len(examples)):
        examples[b]["uniform"] = {
            "tvd": json_number(res.tvd[b]),
            "jsd": json_number(res.jsd[b]),
            "flipped": bool(res.flipped[b]),
            "prediction_uniform": int(res.prediction_uniform[b]),
        }


# -------------------------------------------------------------------------------------------------------------
# the run
# -------------------------------------------------------------------------------------------------------------


def _with_items(tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple[list[int], list[int]]:
    """Indices of the texts with at least one real (non-special, non-padding) token, and of the others."""
    kept, dropped = [], []
    for a in range(0, len(texts), 256):
        enc = encode_texts(tokenizer, texts[a: a + 256], max_length)
        real = enc.inputs["attention_mask"].bool() & ~enc.inputs["special_tokens_mask"].bool()
        for i, n in enumerate(real.sum(-1).tolist()):
            (kept if n > 0 else dropped).append(a + i)
    return kept, dropped


def _prepare_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise PipelineError(f"--out {out} exists and is not a folder")
    existing = [n for n in (STATE_FILE, RESULTS_FILE) if (out / n).exists()]
    if existing and not resume and not overwrite:
        raise RunExistsError(
            f"{out} already holds a run ({', '.join(existing)}); pass --resume to continue it or --overwrite to "
            "start again"
        )
    if overwrite and not resume:
        for name in (STATE_FILE, RESULTS_FILE, "report.md"):
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
        figs = out / "figures"
        if figs.is_dir():
            for p in figs.glob("*.png"):
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def run_evaluation(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int] | None = None,
    methods: Sequence[str] | str = DEFAULT_METHODS,
    evaluators: Sequence[str] | str = DEFAULT_EVALUATORS,
    out_dir: str | os.PathLike = "attnfaith-out",
    *,
    config: EvaluationConfig | None = None,
    rationales: Sequence[Sequence[int]] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    model_source: str | None = None,
    data_info: Mapping[str, Any] | None = None,
    title: str | None = None,
    report: bool = True,
    figures: bool = True,
    strict_methods: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
    **config_kwargs: Any,
) -> dict[str, Any]:
    """Evaluate every chosen attribution method with every chosen evaluator on ``texts``; write the results.

    Args:
        model: a sequence classifier: a HuggingFace ``*ForSequenceClassification`` or a reference model
            (:mod:`attnfaith.models`), on the device it should run on.
        tokenizer: its HuggingFace tokenizer, or a :class:`attnfaith._text.VocabularyTokenizer` (or a
            :class:`attnfaith.data.Vocabulary`, wrapped automatically) for a reference model.
        texts: the texts; ``labels``: optional gold labels (class indices of the model).
        methods, evaluators: names (or comma-separated strings) from :data:`METHODS` / :data:`EVALUATORS`.
        out_dir: the output folder (``results.json``, ``report.md``, ``figures/``, ``partial.jsonl``).
        config: an :class:`EvaluationConfig`; or pass its fields as keyword arguments (``layer=-1``,
            ``batch_size=16``, ``seed=0``...).
        rationales: optional per-text lists of whitespace-word indices that make up the known rationale: the
            report then adds the rationale recovery of each method (precision@k of its top-k tokens, k = number
            of rationale tokens).
        resume: continue the run in ``out_dir`` (finished chunks are read back, not recomputed); the configuration
            and data must match.
        overwrite: start again in an ``out_dir`` that holds a run (its results files are replaced).
        progress: tqdm bars per stage (on stderr).
        model_source, data_info, title: recorded in ``results.json`` and shown in the report.
        report, figures: write ``report.md`` / ``figures/*.png`` (figures need matplotlib).
        strict_methods: a method or evaluator that does not apply to the model raises instead of being skipped
            (with a note in the report).
        on_chunk: called as ``on_chunk(done_chunks, total_chunks)`` after each chunk is saved.

    Returns:
        The ``results.json`` content as a dict.

    Raises:
        PipelineError: bad names or options, a run already in ``out_dir``, a resume that does not match.
    """
    if isinstance(methods, str):
        methods = parse_list(methods, METHODS, "method")
    if isinstance(evaluators, str):
        evaluators = parse_list(evaluators, EVALUATORS, "evaluator")
    if config is None:
        config = EvaluationConfig(methods=tuple(methods), evaluators=tuple(evaluators), **config_kwargs)
    elif config_kwargs:
        raise TypeError("pass either config= or its fields as keyword arguments, not both")
    if not isinstance(model, nn.Module):
        raise PipelineError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    from attnfaith.data import Vocabulary

    if isinstance(tokenizer, Vocabulary):
        tokenizer = VocabularyTokenizer(tokenizer)
    texts = [str(t) for t in texts]
    if not texts:
        raise PipelineError("no texts to evaluate")
    if labels is not None:
        labels = [int(y) for y in labels]
        if len(labels) != len(texts):
            raise PipelineError(f"{len(labels)} labels for {len(texts)} texts")
        n_classes = num_labels_of(model)
        if n_classes is not None:
            bad = [(i, y) for i, y in enumerate(labels) if not 0 <= y < max(n_classes, 2)]
            if bad:
                i, y = bad[0]
                raise PipelineError(f"label {y} (example {i}) is outside the model's classes 0..{max(n_classes, 2) - 1}")
    if rationales is not None:
        rationales = [list(map(int, r)) for r in rationales]
        if len(rationales) != len(texts):
            raise PipelineError(f"{len(rationales)} rationales for {len(texts)} texts")

    out = Path(out_dir)
    _prepare_out_dir(out, resume, overwrite)
    t_start = time.perf_counter()

    run: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "title": title,
        "config": config.to_dict(),
        "seed": config.seed,
        "model": model_description(model, model_source),
        "data": {
            **dict(data_info or {}),
            "n_examples": len(texts),
            "has_labels": labels is not None,
            "has_rationales": rationales is not None,
            "fingerprint": data_fingerprint(texts, labels, rationales),
        },
        "versions": versions(),
        "device": str(_device_of(model)),
    }

    header, done_chunks = load_state(out)
    if resume and header is not None:
        mismatch = _diff(header.get("fingerprint"), _fingerprint(run))
        if mismatch:
            raise PipelineError(
                f"--resume: the run in {out} was made with different settings ({', '.join(mismatch[:4])}"
                f"{'...' if len(mismatch) > 4 else ''}); use a new --out, or --overwrite to start again"
            )
    if header is None:
        done_chunks = {}

    # which methods / evaluators apply (checked on the first example)
    enc0 = encode_texts(tokenizer, texts[:1], config.max_length)
    from attnfaith._state import model_guard

    with model_guard(model):
        query, skipped, notes = _probe(model, enc0, config)
    skipped = {k: v for k, v in skipped.items()
               if k in config.methods or k in config.evaluators or k == "erasure:attention"}
    if strict_methods:
        bad = {k: v for k, v in skipped.items() if k in config.methods or k in config.evaluators}
        if bad:
            k, v = next(iter(bad.items()))
            raise PipelineError(f"{k} does not apply to this model: {v}")
    run["skipped"] = skipped
    run["query"] = query

    if header is None:
        with open(out / STATE_FILE, "w", encoding="utf-8") as f:
            f.write(json.dumps({"kind": "header", "format": STATE_FORMAT, "fingerprint": _fingerprint(run)}) + "\n")

    # examples with no real token (empty texts) cannot be explained: they are left out, and listed
    kept, dropped = _with_items(tokenizer, texts, config.max_length)
    if not kept:
        raise PipelineError("no text has a real (non-special) token to explain")
    run["data"]["dropped_empty"] = dropped
    if dropped:
        notes.append(f"{len(dropped)} example(s) without any real token left out: {dropped[:10]}"
                     f"{'...' if len(dropped) > 10 else ''}")

    n = len(kept)
    bs = config.batch_size
    n_chunks = math.ceil(n / bs)
    todo = [c for c in range(n_chunks) if c not in done_chunks]
    n_done_examples = sum(len(done_chunks[c]["examples"]) for c in done_chunks if c < n_chunks)
    runner = _ChunkRunner(model, tokenizer, config, query, skipped, progress, n, n_done_examples) if todo else None
    resumed = len(done_chunks)
    _end_with_newline(out / STATE_FILE)
    try:
        for c in todo:
            idx = kept[c * bs: (c + 1) * bs]
            rec = runner.run(c, idx, [texts[i] for i in idx], None if labels is None else [labels[i] for i in idx],
                             None if rationales is None else [rationales[i] for i in idx])
            line = json.dumps(_json_safe(rec), allow_nan=False) + "\n"
            with open(out / STATE_FILE, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            done_chunks[c] = rec
            runner.chunk_done(c, n_chunks, len(idx), sum(rec["timings"].values()))
            if on_chunk is not None:
                on_chunk(len(done_chunks), n_chunks)
    finally:
        if runner is not None:
            runner.close()

    examples: list[dict] = []
    stage_times: dict[str, float] = {}
    for c in range(n_chunks):
        examples.extend(done_chunks[c]["examples"])
        for k, v in done_chunks[c]["timings"].items():
            stage_times[k] = stage_times.get(k, 0.0) + float(v)
    run["examples"] = examples
    run["timings"] = {
        "stages": {k: round(v, 4) for k, v in stage_times.items()},
        "evaluation_seconds": round(sum(stage_times.values()), 3),
        "this_session_seconds": round(time.perf_counter() - t_start, 3),
        "chunks": n_chunks,
        "chunks_resumed": min(resumed, n_chunks),
    }
    from attnfaith import report as report_mod

    run["summary"] = report_mod.summarise(run)
    run["notes"] = notes
    if figures:
        t0 = time.perf_counter()
        try:
            from attnfaith import plots

            run["figures"] = plots.make_figures(run, out / "figures")
        except ImportError as exc:
            run["figures"] = {}
            run["notes"].append(f"figures skipped: {exc} (pip install 'attnfaith[plot]')")
        run["timings"]["figures_seconds"] = round(time.perf_counter() - t0, 3)
    run = _json_safe(run)
    _atomic_write(out / RESULTS_FILE, json.dumps(run, indent=1, allow_nan=False))
    if report:
        _atomic_write(out / "report.md", report_mod.render_markdown(run))
    return run
