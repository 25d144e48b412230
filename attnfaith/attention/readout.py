"""Readout-aware variants of the last attention layer: compute only the positions the classification head reads.

When the only intervened attention layer is the model's last one, a variant differs from the original example in that
layer's attention probabilities only. Everything that feeds the layer — the hidden states entering its block, the
queries, keys, values and scores — is the same for every variant, and the classifier reads a few positions of the
block's output: ``[CLS]`` (position 0) for BERT-like poolers, the last real token for decoder classifiers.
:class:`ReadoutCache` therefore computes, once per example (from the original forward, which every evaluator runs
anyway): the block's input ``h``, the values ``V`` and the probabilities at the read rows; and per variant only

    p' = intervention(p[rows])                 [n, H, R, Tk]   (R read rows, usually 1)
    ctx = p' · V                               [n, R, H·Dh]
    out = finish(block, ctx, h[rows])          the rest of the block at those rows (output projection, residual,
                                               norms, feed-forward)
    logits = head(model, out)                  the classification head

which is about ``R / T`` of a block per variant instead of a whole block (the prefix cache's cost) or a whole model.

What has to be known per architecture — where the values come from, how a block is laid out after its attention,
which rows the head reads and how it computes the logits — is the small table :data:`FAMILIES` (keyed by the
config's ``model_type``): BERT-like encoders (BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA), DeBERTa-v2/v3, DistilBERT,
ALBERT, GPT-2 and Llama-like decoders (Llama, Mistral, Qwen2/3, Gemma; Gemma-2/3 with their extra norms).

Never a wrong number: the path is used only after every check of the call passed, else the caller keeps its prefix
cache or complete forwards (``reason`` says why):

* planning: a ``*ForSequenceClassification``-style model of a known family, no user ``forward_func``, no autocast,
  the intervened layer is the last attention layer, a self-attention layer, not in a sliding window shorter than the
  input;
* the head probe: a forward of the first examples in which every position of the block's output that the head is
  said not to read is NaN must give finite logits, equal to the full forward's (the positions the head's result
  depends on are read from the model itself, not assumed);
* the readout logits of every original example must reproduce the full forward's (to 1e-4 relative, as the prefix
  cache): this checks the values, the block layout and the head of the table against the model;
* the first variants of the call are also run through the tap (prefix or complete forward) and compared.

Interventions handled here: ``"zero"`` and ``"permute"`` on the last layer (the evaluators' kinds); anything else
runs through the tap.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from attnfaith._state import local_forward_hook
from attnfaith.attention.interventions import Intervention, apply_interventions
from attnfaith.attention.tap import AttentionTap

__all__ = ["ReadoutCache", "Family", "FAMILIES", "family_of", "readout_block", "has_path", "logits_match",
           "nan_outside_rows"]

_TOLERANCE = 1e-4  # relative, as the prefix cache's check
_KINDS = ("zero", "permute")


# ------------------------------------------------------------------------------------------------ the family table


def _heads(x: torch.Tensor, kv_heads: int, groups: int) -> torch.Tensor:
    """``[b, T, Hkv·Dh]`` → ``[b, Hkv·groups, T, Dh]`` (grouped-query heads repeated as transformers' repeat_kv)."""
    b, t, _ = x.shape
    v = x.view(b, t, kv_heads, -1).transpose(1, 2)
    return v.repeat_interleave(groups, dim=1) if groups > 1 else v


def _bert_finish(block: nn.Module, ctx: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    attention_output = block.attention.output(ctx, h)  # dense, dropout, LayerNorm(. + h)
    return block.output(block.intermediate(attention_output), attention_output)


def _distilbert_finish(block: nn.Module, ctx: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    sa = block.sa_layer_norm(block.attention.out_lin(ctx) + h)
    return block.output_layer_norm(block.ffn(sa) + sa)


def _albert_finish(block: nn.Module, ctx: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    att = block.attention
    a = att.LayerNorm(h + att.output_dropout(att.dense(ctx)))
    return block.full_layer_layer_norm(block.ff_chunk(a) + a)


def _gpt2_values(block: nn.Module, h: torch.Tensor) -> torch.Tensor:
    attn = block.attn
    return attn.c_attn(block.ln_1(h)).split(attn.split_size, dim=2)[2]


def _gpt2_finish(block: nn.Module, ctx: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    h2 = block.attn.resid_dropout(block.attn.c_proj(ctx)) + h
    return h2 + block.mlp(block.ln_2(h2))


def _llama_finish(block: nn.Module, ctx: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    h2 = h + block.self_attn.o_proj(ctx)
    return h2 + block.mlp(block.post_attention_layernorm(h2))


def _gemma2_finish(block: nn.Module, ctx: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    h2 = h + block.post_attention_layernorm(block.self_attn.o_proj(ctx))
    return h2 + block.post_feedforward_layernorm(block.mlp(block.pre_feedforward_layernorm(h2)))


def _first_rows(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    return torch.zeros(input_ids.shape[0], 1, dtype=torch.long, device=input_ids.device)


def _last_non_pad_rows(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """transformers' rule for decoder classifiers: the rightmost position whose id is not the pad id (the last
    position without a pad id)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    pad = getattr(config, "pad_token_id", None)
    B, T = input_ids.shape
    if pad is None:
        return torch.full((B, 1), T - 1, dtype=torch.long, device=input_ids.device)
    non_pad = (input_ids != pad).to(torch.int32)
    idx = torch.arange(T, device=input_ids.device, dtype=torch.int32)
    return (idx * non_pad).argmax(-1).long()[:, None]


def _bert_head(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.classifier(model.dropout(model.base_model.pooler(x)))


def _albert_head(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    base = model.base_model
    return model.classifier(model.dropout(base.pooler_activation(base.pooler(x[:, 0]))))


def _cls_head(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.classifier(x)  # RobertaClassificationHead & co. read x[:, 0]


def _deberta_head(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.classifier(model.dropout(model.pooler(x)))


def _distilbert_head(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    pooled = torch.relu(model.pre_classifier(x[:, 0]))
    return model.classifier(model.dropout(pooled))


def _gpt2_head(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.score(model.base_model.ln_f(x))[:, 0]


def _llama_head(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.score(model.base_model.norm(x))[:, 0]


@dataclass(frozen=True)
class Family:
    """How one family of architectures computes its last block after the attention and its classification head.

    Attributes:
        name: the family.
        attention: path of the attention module inside a block (the module holding the value projection).
        values: ``values(block, h)`` → the value projection ``[b, T, Hkv·Dh]`` of the block input ``h``.
        finish: ``finish(block, ctx, h)`` → the block's output at some rows, from the attention context ``ctx``
            ``[n, R, H·Dh]`` (the attention function's output, heads concatenated) and the block input ``h``
            ``[n, R, D]`` at the same rows.
        rows: ``rows(model, input_ids)`` → LongTensor ``[B, R]``: the positions of the last block's output the head
            reads.
        head: ``head(model, x)`` → logits ``[n, C]`` from the block output at those rows ``[n, R, D]``.
        needs: attributes the model must have (dotted paths) for ``head``.
        context: path, inside a block, of the module whose first input is the attention context ``ctx``
            ``[n, T, H·Dh]`` that ``finish`` starts from (the output projection, or BERT's ``attention.output``);
            used by :mod:`attnfaith.attention.readout_forward`.
    """

    name: str
    attention: str
    values: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    finish: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    rows: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    head: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    needs: tuple[str, ...] = ()
    context: str = ""


_BERT = Family("bert", "attention.self", lambda b, h: b.attention.self.value(h), _bert_finish, _first_rows,
               _bert_head, ("classifier", "dropout", "base_model.pooler"), "attention.output")
_CLS_HEAD = Family("roberta", "attention.self", lambda b, h: b.attention.self.value(h), _bert_finish, _first_rows,
                   _cls_head, ("classifier",), "attention.output")
_DEBERTA = Family("deberta-v2", "attention.self", lambda b, h: b.attention.self.value_proj(h), _bert_finish,
                  _first_rows, _deberta_head, ("classifier", "dropout", "pooler"), "attention.output")
_DISTILBERT = Family("distilbert", "attention", lambda b, h: b.attention.v_lin(h), _distilbert_finish, _first_rows,
                     _distilbert_head, ("classifier", "dropout", "pre_classifier"), "attention.out_lin")
_ALBERT = Family("albert", "attention", lambda b, h: b.attention.value(h), _albert_finish, _first_rows, _albert_head,
                 ("classifier", "dropout", "base_model.pooler", "base_model.pooler_activation"), "attention.dense")
_GPT2 = Family("gpt2", "attn", _gpt2_values, _gpt2_finish, _last_non_pad_rows, _gpt2_head,
               ("score", "base_model.ln_f"), "attn.c_proj")
_LLAMA = Family("llama", "self_attn", lambda b, h: b.self_attn.v_proj(b.input_layernorm(h)), _llama_finish,
                _last_non_pad_rows, _llama_head, ("score", "base_model.norm"), "self_attn.o_proj")
_GEMMA2 = Family("gemma2", "self_attn", lambda b, h: b.self_attn.v_proj(b.input_layernorm(h)), _gemma2_finish,
                 _last_non_pad_rows, _llama_head, ("score", "base_model.norm"), "self_attn.o_proj")

FAMILIES: dict[str, Family] = {
    "bert": _BERT,
    "roberta": _CLS_HEAD, "xlm-roberta": _CLS_HEAD, "camembert": _CLS_HEAD, "electra": _CLS_HEAD,
    "deberta-v2": _DEBERTA,
    "distilbert": _DISTILBERT,
    "albert": _ALBERT,
    "gpt2": _GPT2,
    "llama": _LLAMA, "mistral": _LLAMA, "qwen2": _LLAMA, "qwen3": _LLAMA, "gemma": _LLAMA,
    "gemma2": _GEMMA2, "gemma3_text": _GEMMA2,
}
"""``config.model_type`` → :class:`Family`. Anything not listed (ModernBERT, BART, T5, custom models...) keeps the
prefix cache or complete forwards."""


def family_of(model: nn.Module) -> Family | None:
    """The :class:`Family` of ``model`` (from ``model.config.model_type``), or None."""
    return FAMILIES.get(getattr(getattr(model, "config", None), "model_type", None))


def has_path(obj: Any, path: str) -> bool:
    """Whether ``obj`` has the dotted attribute path ``path`` (each step not None)."""
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return True


def nan_outside_rows(output: Any, read: torch.Tensor) -> Any:
    """A block's output (a tensor ``[B, T, D]`` or a tuple led by one) with every position outside ``read``
    (``[B, R]`` row indices per example) set to NaN: the head probe's input. A head that reads only ``read`` still
    gives finite logits from it."""
    out = output[0] if isinstance(output, tuple) else output
    keep = torch.zeros(out.shape[:2], dtype=torch.bool, device=out.device)
    keep.scatter_(1, read, True)
    new = out.masked_fill(~keep[:, :, None], float("nan"))
    return (new, *output[1:]) if isinstance(output, tuple) else new


def readout_block(model: nn.Module, layer_name: str) -> tuple[str, nn.Module] | None:
    """The block holding the attention module ``layer_name`` (a tap layer's name, ``#k`` suffix allowed): its
    deepest ancestor that is an element of an ``nn.ModuleList``; ``(name, module)`` or None."""
    parts = layer_name.split("#")[0].split(".")
    modules = dict(model.named_modules())
    for depth in range(len(parts) - 1, 0, -1):
        parent = modules.get(".".join(parts[: depth - 1]))
        if isinstance(parent, nn.ModuleList) and parts[depth - 1].isdigit():
            name = ".".join(parts[:depth])
            return name, modules[name]
    return None


def logits_match(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The fast paths' equality check: same shape, ``a`` finite and ``max |a − b| ≤ 1e-4 · max(1, max |b|)``."""
    if a.shape != b.shape:
        return False
    a, b = a.float(), b.float()
    if not bool(torch.isfinite(a).all()):
        return False
    scale = b.abs().max().clamp_min(1.0)
    return bool((a - b).abs().max() <= _TOLERANCE * scale)


# ------------------------------------------------------------------------------------------------ the cache


class ReadoutCache:
    """Variants of the last attention layer computed at the rows the classification head reads only.

    Usage (inside an active tap whose layer list is known; see :class:`attnfaith.evaluators._variants`)::

        cache = ReadoutCache(model, tap, layer, batch)       # cache.applicable / cache.reason
        with cache.recording():
            ... the original forwards of the batch's rows, in order (any chunking) ...
            cache.collect(B_rows)                            # after each chunk's forward
        cache.verify(logits, run_rows)                       # head probe + equality: sets cache.active
        out = cache.run(rows, interventions)                 # logits, or None: run it through the tap

    Args:
        model, tap: the model and its active tap.
        layer: the intervened layer (must be the last attention layer).
        batch: the normalised batch (:class:`attnfaith._inputs.Batch`) whose rows the variants come from.
    """

    def __init__(self, model: nn.Module, tap: AttentionTap, layer: int, batch: Any) -> None:
        self.model = model
        self.tap = tap
        self.layer = layer
        self.batch = batch
        self.applicable = False
        self.active = False
        self.reason = ""
        self._checked_variants = False
        self._h: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._probs: list[torch.Tensor] = []
        self._pending: torch.Tensor | None = None
        self._saved_capture: Any = None
        self._plan()

    # ---------------------------------------------------------------- planning
    def _plan(self) -> None:
        model, tap, batch = self.model, self.tap, self.batch
        family = family_of(model)
        layers = tap.layers
        if family is None:
            self.reason = "no readout family for this model (config.model_type)"
            return
        if getattr(batch, "forward", None) is not None:
            self.reason = "the model is called through a user forward_func"
            return
        missing = [p for p in family.needs if not has_path(model, p)]
        if missing:
            self.reason = f"the model has no {missing[0]} (not a sequence classifier of the {family.name} family)"
            return
        if not layers or self.layer != len(layers) - 1:
            self.reason = "the intervened layer is not the last attention layer"
            return
        info = layers[self.layer]
        if info.kind != "self":
            self.reason = "the last attention layer is not a self-attention layer"
            return
        found = readout_block(model, info.name)
        if found is None:
            self.reason = "no block list above the last attention layer"
            return
        block_name, block = found
        attention = block.get_submodule(family.attention) if has_path(block, family.attention) else None
        if attention is None:
            self.reason = f"the block has no {family.attention}"
            return
        T = batch.input_ids.shape[1]
        window = getattr(attention, "sliding_window", None)
        if isinstance(window, int) and not isinstance(window, bool) and window < T:
            self.reason = "the last layer attends within a sliding window shorter than the input"
            return
        self.family = family
        self.block = block
        self.attention = attention
        self.calls_per_forward = sum(1 for l in layers if l.name.split("#")[0].startswith(block_name + "."))
        self.causal = info.causal
        self.groups = int(getattr(attention, "num_key_value_groups", 1) or 1)
        self.rows = family.rows(model, batch.input_ids).to(batch.device)  # [B, R]
        self.applicable = True

    # ---------------------------------------------------------------- recording the original forward
    def recording(self):
        """Context for the original forwards: records the block input of the last call of the block per forward
        (pre-hook, calling thread only) and makes the tap capture the layer's probabilities."""
        return _Recording(self)

    def collect(self, rows: torch.Tensor) -> None:
        """After the original forward of the batch's ``rows`` (consecutive, in order): keep what the variants
        need (values, block input and probabilities at the read rows)."""
        if not self.applicable or self._pending is None:
            return
        h = self._pending
        self._pending = None
        try:
            probs = self.tap.attention(self.layer)  # [b, H, Tq, Tk]
            read = self.rows.index_select(0, rows)  # [b, R]
            b, H = probs.shape[:2]
            idx = read[:, None, :, None].expand(b, H, read.shape[1], probs.shape[-1])
            self._probs.append(probs.gather(2, idx))
            self._h.append(h.gather(1, read[:, :, None].expand(-1, -1, h.shape[-1])))
            values = self.family.values(self.block, h)
            self._values.append(_heads(values, H // self.groups, self.groups))
        except Exception as exc:  # a layout the table does not describe: keep the other paths
            self.applicable = False
            self._fail(f"recording the original forward failed ({type(exc).__name__}: {exc})")

    def _take_input(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        h = args[0] if args else kwargs.get("hidden_states")
        if isinstance(h, torch.Tensor):
            self._pending = h

    # ---------------------------------------------------------------- verification
    def verify(self, logits: torch.Tensor, run_rows: Callable[[torch.Tensor], torch.Tensor]) -> bool:
        """Activate the path if the checks of the module docstring pass on this call's original forward:
        ``logits`` ``[B, C]`` (the full forward's) and ``run_rows(rows)`` (a forward of the batch's rows through the
        tap). Returns :attr:`active`."""
        if not self.applicable:
            return False
        B = self.batch.input_ids.shape[0]
        if sum(p.shape[0] for p in self._probs) != B:
            return self._fail("the original forward did not run the last block once per example")
        self.probs = torch.cat(self._probs)
        self.h = torch.cat(self._h)
        self.values = torch.cat(self._values)
        self._probs, self._h, self._values = [], [], []
        k = min(B, 4)
        rows = torch.arange(k, device=self.batch.device)
        try:
            probed = self._probe(run_rows, rows)
        except Exception as exc:  # the model cannot run with the probe: keep the other paths
            return self._fail(f"the head probe failed ({type(exc).__name__}: {exc})")
        if not bool(torch.isfinite(probed).all()):
            return self._fail("the head reads positions other than the readout rows")
        if not logits_match(probed, logits[:k]):
            return self._fail("the head probe does not reproduce the full forward")
        try:
            mine = self._logits(torch.arange(B, device=self.batch.device), self.probs)
        except Exception as exc:
            return self._fail(f"the readout computation failed ({type(exc).__name__}: {exc})")
        if not logits_match(mine.reshape(logits.shape), logits):
            return self._fail("the readout path does not reproduce the full forward")
        self.active = True
        return True

    def _probe(self, run_rows, rows: torch.Tensor) -> torch.Tensor:
        """Logits of ``rows`` with every position of the last block's output that the head should not read set to
        NaN (the last call of the block in each forward)."""
        read = self.rows.index_select(0, rows)
        calls = [0]

        def poison(module, args, output):
            calls[0] += 1
            if calls[0] % self.calls_per_forward:
                return None
            return nan_outside_rows(output, read)

        with local_forward_hook(self.block, poison):
            return run_rows(rows)

    def _fail(self, reason: str) -> bool:
        self.reason = reason
        self.active = False
        self.probs = self.h = self.values = None
        return False

    # ---------------------------------------------------------------- variants
    def _logits(self, rows: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Logits from the probabilities ``probs`` ``[n, H, R, Tk]`` at the read rows of the batch rows ``rows``."""
        values = self.values.index_select(0, rows)  # [n, H, Tk, Dh]
        ctx = torch.matmul(probs.to(values.dtype), values)  # [n, H, R, Dh]
        n, H, R, Dh = ctx.shape
        ctx = ctx.transpose(1, 2).reshape(n, R, H * Dh)
        out = self.family.finish(self.block, ctx, self.h.index_select(0, rows))
        return self.family.head(self.model, out)

    def interventions(self, specs: Sequence[tuple[str, Any, dict]]) -> list[Intervention] | None:
        """The tap-style ``(kind, value, kwargs)`` specs as :class:`Intervention` objects on the last layer, or None
        when one of them is not handled here (another kind, another layer, a row selection)."""
        out = []
        n_layers = len(self.tap.layers)
        for kind, value, kwargs in specs:
            if kind not in _KINDS or set(kwargs) - {"layers", "heads"}:
                return None
            layers = kwargs.get("layers", -1)
            layers = [layers] if isinstance(layers, int) else list(layers) if layers is not None else None
            if layers is None or any(int(l) % n_layers != self.layer for l in layers):
                return None
            heads = kwargs.get("heads")
            heads = (heads,) if isinstance(heads, int) else (tuple(heads) if heads is not None else None)
            out.append(Intervention(kind=kind, value=value, layers=None, rows=None, heads=heads))
        return out

    def run(self, rows: torch.Tensor, specs: Sequence[tuple[str, Any, dict]],
            through_tap: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Logits ``[n, C]`` of the variants of batch rows ``rows`` with the interventions ``specs`` (the tap's
        ``(kind, value, kwargs)``), or None when this path does not apply (not active, an intervention it does not
        handle, or the first variants of the call do not match ``through_tap()``, the same variants run through the
        tap)."""
        if not self.active:
            return None
        ivs = self.interventions(specs)
        if ivs is None:
            return None
        p = self.probs.index_select(0, rows)
        read = self.rows.index_select(0, rows)
        key_mask = self.batch.attention_mask.index_select(0, rows) != 0  # [n, Tk]
        allowed = key_mask[:, None, None, :]
        if self.causal:
            Tk = p.shape[-1]
            allowed = allowed & (torch.arange(Tk, device=p.device)[None, None, None, :] <= read[:, None, :, None])
        try:
            p = apply_interventions(p, allowed, ivs, self.layer, None, causal=self.causal)
            logits = self._logits(rows, p)
        except Exception as exc:  # e.g. an intervention value of an unexpected shape: the tap reports it
            self._fail(f"the readout computation failed ({type(exc).__name__}: {exc})")
            return None
        if not self._checked_variants and through_tap is not None:
            self._checked_variants = True
            m = min(int(rows.shape[0]), 2)
            reference = through_tap(m)
            if not logits_match(logits[:m].reshape(reference.shape), reference):
                self._fail("the readout path does not reproduce the tap's variants")
                return None
        return logits.reshape(logits.shape[0], -1) if logits.dim() > 2 else logits


class _Recording:
    def __init__(self, cache: ReadoutCache) -> None:
        self.cache = cache
        self._handle = None
        self._hook = None

    def __enter__(self) -> "_Recording":
        cache = self.cache
        if not cache.applicable:
            return self
        tap = cache.tap
        cache._saved_capture = tap.capture
        if tap.capture is None:
            tap.capture = [cache.layer]
        elif tap.capture != "all" and cache.layer not in [c % len(tap.layers) for c in tap.capture]:
            tap.capture = [*tap.capture, cache.layer]
        self._hook = _ThreadPreHook(cache.block, cache._take_input)
        self._hook.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        cache = self.cache
        if self._hook is not None:
            self._hook.__exit__(*exc)
            self._hook = None
            cache.tap.capture = cache._saved_capture


class _ThreadPreHook:
    """A forward pre-hook (with kwargs) that runs only for forwards in the calling thread (as
    :func:`attnfaith._state.local_forward_hook` for forward hooks)."""

    def __init__(self, module: nn.Module, hook: Callable[[nn.Module, tuple, dict], None]) -> None:
        self.module = module
        self.hook = hook
        self.thread = threading.get_ident()
        self.handle = None

    def __enter__(self) -> "_ThreadPreHook":
        def run(module, args, kwargs):
            if threading.get_ident() == self.thread:
                self.hook(module, args, kwargs)
            return None

        self.handle = self.module.register_forward_pre_hook(run, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
