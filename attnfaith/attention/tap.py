"""``AttentionTap``: read and intervene on the attention probabilities of any model.

This module (with :mod:`attnfaith.attention.hf`) is the only place in attnfaith that knows about architectures.
Three routes reach the attention of a model, chosen in this order:

1. ``"module"``: the model computes its attention with :class:`attnfaith.nn.AttentionSoftmax`, or the caller names
   the modules whose output is the attention distribution (``modules=[...]``). A forward hook reads and replaces
   that output.
2. ``"interface"``: a HuggingFace model whose attention goes through transformers' ``AttentionInterface``
   (``model._can_set_attn_implementation()``). For the tap's lifetime every config of the model is switched to the
   ``"attnfaith"`` implementation (registered with ``AttentionInterface`` and ``AttentionMaskInterface``), an exact
   re-implementation of eager attention that calls back into the tap.
3. ``"dropout"``: models that compute attention themselves (DeBERTa-v2/v3): a forward hook on every dropout module;
   those whose input is a probability tensor ``[B, H, Tq, Tk]`` (non-negative, rows summing to 1 or 0) in the first
   forward are taken to be the dropout on the attention probabilities. No per-model list is involved.

Layers are numbered in the order their attention runs within one forward of the model: DistilBERT (no
``layer_idx``), ALBERT (one module called once per layer), T5/BART (encoder self, then decoder self and cross
attention, which reuse ``layer_idx``) all get distinct, stable indices. ``tap.layers`` describes them.

Leaving the context restores the model exactly: every config's attention implementation, no hook left behind, also
when the body raised. Taps are per thread (see "Threads" in :class:`AttentionTap`): the changes above are shared by
the taps active on a model at the same time, made by the first and undone by the last to leave.

Length: a little over 600 lines, kept in one module on purpose: the three routes share one layer counter, one
install/restore path and one per-thread claim, and splitting them would put the restore guarantee in several places.
"""

from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass
from functools import partial
from typing import Iterable, Sequence

import torch
from torch import nn

from attnfaith import _state
from attnfaith.attention import hf
from attnfaith.attention.interventions import KINDS, Intervention, apply_interventions
from attnfaith.nn import AttentionSoftmax

__all__ = ["AttentionTap", "AttentionLayer", "AttentionUnreachableError", "known_layers"]

_CROSS_MARKERS = ("cross", "encdec", "encoder_attn")

# model -> tuple of AttentionLayer seen in its last complete forward under a tap
_LAYER_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple[AttentionLayer, ...]]" = weakref.WeakKeyDictionary()


class AttentionUnreachableError(ValueError):
    """The tap found no attention it can read in the model."""


@dataclass(frozen=True)
class AttentionLayer:
    """One attention layer as the tap sees it.

    Attributes:
        index: position in the order attention runs within one forward (0-based).
        name: the module's name in ``model.named_modules()`` (``"#k"`` appended for the k-th call of a module that
            runs several times per forward, as ALBERT's shared layer).
        kind: ``"self"`` or ``"cross"``.
        causal: whether a query may only see keys at or before its position.
        route: ``"interface"``, ``"module"`` or ``"dropout"``.
        num_heads: heads (1 for a single-distribution attention such as additive attention).
    """

    index: int
    name: str
    kind: str
    causal: bool
    route: str
    num_heads: int


def known_layers(model: nn.Module) -> tuple[AttentionLayer, ...] | None:
    """The layers a tap saw in ``model``'s last forward, or None if no tap has run a forward on it yet."""
    return _LAYER_CACHE.get(model)


def _configs(model: nn.Module) -> list:
    """Every distinct transformers config object reachable from the model (model, sub-modules, sub-configs)."""
    try:
        from transformers import PretrainedConfig
    except Exception:  # pragma: no cover
        return []
    found: dict[int, object] = {}

    def visit(cfg) -> None:
        if not isinstance(cfg, PretrainedConfig) or id(cfg) in found:
            return
        found[id(cfg)] = cfg
        for key in getattr(cfg, "sub_configs", {}) or {}:
            visit(getattr(cfg, key, None))

    for module in model.modules():
        visit(getattr(module, "config", None))
    return list(found.values())


_TAP = "tap"  # the kind of claim (attnfaith._state.claim) a tap holds on its model's modules and configs


def _tap_of(obj: object) -> "AttentionTap | None":
    """The tap active on ``obj`` (a module or config of its model) in the calling thread, or None."""
    return _state.owner(_TAP, obj)


def _attention_callback(obj: object):
    """For :mod:`attnfaith.attention.hf`: the callback of the interface-route tap on ``obj`` in the calling thread,
    or None (the forward then runs the model's original attention)."""
    tap = _tap_of(obj)
    return tap._on_attention if tap is not None and tap.route == "interface" else None


def _model_start(module: nn.Module, args: tuple, kwargs: dict | None = None):
    """Forward pre-hook shared by every tap on ``module``: runs the calling thread's tap, if it taps this model."""
    tap = _tap_of(module)
    if tap is not None and tap.model is module:
        tap._on_model_start(module, args, kwargs or {})
    return None


def _model_end(module: nn.Module, args: tuple, output):
    tap = _tap_of(module)
    if tap is not None and tap.model is module:
        tap._on_model_end(module, args, output)
    return None


def _module_output(module: nn.Module, args: tuple, *rest):
    """Forward hook shared by every module-/dropout-route tap on ``module``; ``rest`` is ``(kwargs, output)``, or
    ``(output,)`` when another thread's forward runs while the hook is being (un)registered."""
    kwargs, output = rest if len(rest) == 2 else ({}, rest[0])
    tap = _tap_of(module)
    if tap is None or module not in tap._hooked:
        return None
    handler = tap._on_module_output if tap.route == "module" else tap._on_dropout_output
    return handler(module, args, kwargs, output)


def _hook_model(model: nn.Module):
    """Install the shared model-level hooks; returns the function removing them."""
    handles = [model.register_forward_pre_hook(_model_start, with_kwargs=True),
               model.register_forward_hook(_model_end, always_call=True)]
    return lambda: [h.remove() for h in handles]


def _hook_output(module: nn.Module):
    """Install the shared output hook on an attention (or dropout) module; returns the function removing it."""
    return module.register_forward_hook(_module_output, with_kwargs=True).remove


class AttentionTap:
    """Record, and optionally intervene on, every attention distribution of a model during its forwards.

    Example::

        with AttentionTap(model) as tap:
            logits = model(**enc).logits
        tap.attentions          # one [B, H, Tq, Tk] tensor per attention layer, in call order
        tap.layers              # AttentionLayer(index, name, kind, causal, route, num_heads) for each

    Args:
        model: a HuggingFace ``PreTrainedModel`` or any ``nn.Module`` (see the routes in the module docstring).
        capture: which layers' probabilities to keep: ``"all"`` (default), ``None`` (none: saves memory when only
            interventions are needed) or a sequence of layer indices (negative counts from the end).
        keep_grad: keep the captured probabilities in the autograd graph, so one backward gives d output /
            d attention for every captured layer (``torch.autograd.grad(y, tap.attentions)``).
        detach: cut the gradient through the attention weights (the forward is unchanged): the downstream
            computation sees the weights as constants, as Jain & Wallace's gradient importance does
            (``batch_data.detach = True``). With ``keep_grad`` the captured weights become leaves whose gradient
            is d output / d attention with the attention held fixed.
        modules: names of modules whose output is an attention distribution (``[B, Tk]``, ``[B, Tq, Tk]`` or
            ``[B, H, Tq, Tk]``); forces the module route.
        route: ``"auto"`` (default) or one of ``"interface"``, ``"module"``, ``"dropout"``.

    Custom attention shapes are presented as 4-D: ``[B, Tk]`` becomes ``[B, 1, 1, Tk]``, ``[B, Tq, Tk]`` becomes
    ``[B, 1, Tq, Tk]``.

    Threads: a tap acts on the forwards run in the thread that entered it, and only on those. Its recording, layer
    counting and interventions are its own; one thread may hold one tap per model (a second is a ``RuntimeError``),
    other threads may hold their own taps on the same model at the same time. What a route changes on the model
    (the model-level hooks, every config switched to ``"attnfaith"``, the output hooks of the module and dropout
    routes) is shared by the taps active on it: made by the first, undone when the last leaves, and in any thread
    with no tap on the model it does nothing: that thread computes exactly what the model computes without attnfaith
    (on the interface route its config's original attention function and mask, eager or sdpa, bit for bit).
    Forwards run by another thread on a tap's behalf (a thread pool, autograd's device threads re-running a
    checkpointed forward) are not seen by the tap.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        capture: str | Sequence[int] | None = "all",
        keep_grad: bool = False,
        detach: bool = False,
        modules: Sequence[str] | None = None,
        route: str = "auto",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if route not in ("auto", "interface", "module", "dropout"):
            raise ValueError(f"route must be 'auto', 'interface', 'module' or 'dropout', got {route!r}")
        if not (capture is None or capture == "all" or _is_int_sequence(capture)):
            raise ValueError(f"capture must be 'all', None or a sequence of layer indices, got {capture!r}")
        self.model = model
        self.capture = capture
        self.keep_grad = bool(keep_grad)
        self.detach = bool(detach)
        self._module_names = list(modules) if modules is not None else None
        self._requested_route = route
        self.route: str | None = None
        self._interventions: list[Intervention] = []
        self._active = False
        self._shared: list[tuple] = []
        self._hooked: frozenset[nn.Module] = frozenset()
        self._names: dict[nn.Module, str] = {}
        self._attention_modules: list[nn.Module] = []
        self._dropout_confirmed: set[nn.Module] | None = None
        self._dropout_causal: dict[nn.Module, bool] = {}
        self._model_key_mask: torch.Tensor | None = None
        self._depth = 0
        self._partial_index: dict[str, int] | None = None
        self._reset_forward()
        self._layers: tuple[AttentionLayer, ...] = known_layers(model) or ()

    # ------------------------------------------------------------------ public API
    @property
    def layers(self) -> tuple[AttentionLayer, ...]:
        """The attention layers, in call order (known after the first forward on this model under a tap)."""
        return self._layers

    @property
    def num_layers(self) -> int | None:
        return len(self._layers) if self._layers else None

    @property
    def attentions(self) -> tuple[torch.Tensor, ...]:
        """The probabilities each attention layer used in the last forward, ``[B, H, Tq, Tk]`` per layer.

        With ``capture`` restricting the layers, only those are returned, in layer order.
        """
        return tuple(self._captured[i] for i in sorted(self._captured))

    def attention(self, layer: int) -> torch.Tensor:
        """The probabilities of one layer (negative indices count from the end) in the last forward."""
        idx = self.resolve_layer(layer)
        if idx not in self._captured:
            raise ValueError(f"layer {layer} was not captured (capture={self.capture!r})")
        return self._captured[idx]

    def resolve_layer(self, layer: int, *, name: str = "layer") -> int:
        """Map a possibly negative layer index to its position; ``ValueError`` naming ``name`` if out of range."""
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise TypeError(f"{name} must be an int, got {type(layer).__name__}")
        n = self.num_layers
        if n is None:
            if layer >= 0:
                return layer
            raise ValueError(
                f"{name}={layer} counts from the end but the number of attention layers is not known yet: "
                "run one forward of the model inside the tap first"
            )
        if not -n <= layer < n:
            raise ValueError(f"{name}={layer} is out of range: the model has {n} attention layers")
        return layer % n

    def intervene(
        self,
        kind: str,
        value: torch.Tensor | None = None,
        *,
        layers: int | Iterable[int] | None = -1,
        rows: torch.Tensor | None = None,
        heads: int | Iterable[int] | None = None,
    ) -> Intervention:
        """Add an intervention applied in every following forward until :meth:`clear` (or :meth:`remove`).

        Args:
            kind: ``"permute"``, ``"zero"``, ``"replace"`` or ``"uniform"`` (see
                :mod:`attnfaith.attention.interventions`).
            value: the permutation / erase mask / new weights for the kind.
            layers: a layer index, several, or None for every layer. Default: the last layer. Negative indices
                need the layer count: known after one complete forward of the model under any tap (else
                ``ValueError``); a non-negative index given before that is checked after the first forward.
            rows: BoolTensor ``[B]`` of batch rows to change (None: all); other rows stay bit-identical.
            heads: a head index, several, or None for every head.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if kind != "uniform" and value is None:
            raise ValueError(f"value is required for a {kind!r} intervention")
        if layers is None:
            layer_t = None
        else:
            seq = [layers] if isinstance(layers, int) else list(layers)
            if not _is_int_sequence(seq):
                raise TypeError(f"layers must be an int, a sequence of ints or None, got {layers!r}")
            # resolves negative indices; raises when they cannot be resolved yet (unknown layer count): applied
            # lazily they would be silently skipped in the first forward
            seq = [self.resolve_layer(i, name="layers") for i in seq]
            layer_t = tuple(seq)
        head_t = None
        if heads is not None:
            head_t = (heads,) if isinstance(heads, int) else tuple(heads)
            if not _is_int_sequence(head_t):
                raise TypeError(f"heads must be an int, a sequence of ints or None, got {heads!r}")
        if rows is not None:
            rows = torch.as_tensor(rows)
            if rows.dtype != torch.bool or rows.dim() != 1:
                raise TypeError("rows must be a 1-D boolean tensor with one entry per batch row")
        iv = Intervention(kind=kind, value=value, layers=layer_t, rows=rows, heads=head_t)
        self._interventions.append(iv)
        return iv

    def remove(self, intervention: Intervention) -> None:
        self._interventions = [iv for iv in self._interventions if iv is not intervention]

    def clear(self) -> None:
        """Drop every intervention (captures are kept)."""
        self._interventions = []

    # ------------------------------------------------------------------ context management
    def __enter__(self) -> "AttentionTap":
        with _state.LOCK:
            if self._active:
                raise RuntimeError("this AttentionTap is already active")
            self._active = True
        try:
            self._install()
        except BaseException:
            self._uninstall()
            self._active = False
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._uninstall()
        self._active = False

    def _install(self) -> None:
        """Claim the model's modules and configs for this tap in the calling thread, then share the model's hooks
        and config switch with the other taps on it (see "Threads" in the class docstring)."""
        model = self.model
        self._names = {}
        for name, module in model.named_modules():
            self._names.setdefault(module, name)
        configs = _configs(model)
        _state.claim(_TAP, [*self._names, *configs], self,
                     "another AttentionTap is already active on this model in this thread")
        route = self._choose_route()
        self.route = route
        self._share(("tap-model", id(model)), partial(_hook_model, model))
        if route == "interface":
            hf.register()
            # modules first, configs second: undone in reverse, so a forward that still reads "attnfaith" from a
            # config finds its module switched
            for module in self._names:
                self._share(("tap-attention", id(module)), partial(hf.activate, module, _attention_callback))
            for cfg in configs:
                self._share(("tap-config", id(cfg)), partial(hf.switch, cfg, _attention_callback))
            self._attention_modules = list(self._names)
        else:  # module or dropout: a shared output hook on each candidate module
            self._hooked = frozenset(self._attention_modules)
            for module in self._attention_modules:
                self._share(("tap-output", id(module)), partial(_hook_output, module))

    def _share(self, key: tuple, install) -> None:
        _state.share(key, install)
        self._shared.append(key)

    def _uninstall(self) -> None:
        for key in reversed(self._shared):
            _state.unshare(key)
        self._shared = []
        _state.release(_TAP, self)
        self._hooked = frozenset()
        self._depth = 0
        self._partial_index: dict[str, int] | None = None
        self._model_key_mask = None

    def _choose_route(self) -> str:
        model = self.model
        requested = self._requested_route
        if self._module_names is not None:
            if requested not in ("auto", "module"):
                raise ValueError("modules=... uses the module route; route must be 'auto' or 'module'")
            mods = []
            for name in self._module_names:
                try:
                    mods.append(model.get_submodule(name))
                except AttributeError as exc:
                    raise ValueError(f"modules: the model has no submodule named {name!r}") from exc
            self._attention_modules = mods
            return "module"
        softmaxes = [m for m in model.modules() if isinstance(m, AttentionSoftmax)]
        if requested in ("auto", "module") and softmaxes:
            self._attention_modules = softmaxes
            return "module"
        if requested == "module":
            raise AttentionUnreachableError(
                "model: route='module' needs attnfaith.nn.AttentionSoftmax modules in the model or modules=[...]"
            )
        can_interface = bool(getattr(model, "_can_set_attn_implementation", lambda: False)()) and bool(
            _configs(model)
        )
        if requested in ("auto", "interface") and can_interface:
            return "interface"
        if requested == "interface":
            raise AttentionUnreachableError(
                f"model: {type(model).__name__} does not route attention through transformers' AttentionInterface"
            )
        dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout) or type(m).__name__.endswith("Dropout")]
        if not dropouts:
            raise AttentionUnreachableError(
                f"model: no attention the tap can reach in {type(model).__name__}: it does not use transformers' "
                "AttentionInterface, has no attnfaith.nn.AttentionSoftmax and no dropout module on attention "
                "probabilities; use attnfaith.nn.AttentionSoftmax in the model or pass modules=[...] naming the "
                "module whose output is the attention distribution"
            )
        self._attention_modules = dropouts
        return "dropout"

    # ------------------------------------------------------------------ forward bookkeeping
    def _reset_forward(self) -> None:
        self._call_index = 0
        self._calls_per_module: dict[nn.Module, int] = {}
        self._seen: list[AttentionLayer] = []
        self._captured: dict[int, torch.Tensor] = {}
        self._confirmed_now: set[nn.Module] = set()

    def _on_model_start(self, module, args, kwargs):
        if self._depth == 0:
            self._reset_forward()
            mask = kwargs.get("attention_mask")
            if mask is None and len(args) > 1 and isinstance(args[1], torch.Tensor):
                mask = args[1]
            self._model_key_mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        self._depth += 1
        return None

    def _on_model_end(self, module, args, output):
        self._depth = max(self._depth - 1, 0)
        # an ``always_call`` hook also runs when the forward raised (output None, inside torch's ``except``): the
        # layers seen so far are a prefix of the model's, so the list of the last complete forward stays
        if self._depth == 0 and not (output is None and sys.exc_info()[0] is not None):
            self._finish_forward()
        return None

    def _finish_forward(self) -> None:
        if self._partial_index is not None:
            return  # a partial forward (prefix cache): the layer list stays the full forward's
        if not self._seen:
            raise AttentionUnreachableError(
                f"model: the forward of {type(self.model).__name__} ran no attention the tap can reach "
                f"(route {self.route!r}); use attnfaith.nn.AttentionSoftmax in the model or pass modules=[...]"
            )
        if self.route == "dropout" and self._dropout_confirmed is None:
            self._dropout_confirmed = {m for m in self._attention_modules if m in self._confirmed_now}
        layers = tuple(self._seen)
        self._layers = layers
        _LAYER_CACHE[self.model] = layers
        for iv in self._interventions:
            bad = [i for i in iv.layers or () if not -len(layers) <= i < len(layers)]
            if bad:
                raise ValueError(f"layers={bad[0]} is out of range: the model has {len(layers)} attention layers")

    def set_partial(self, enabled: bool) -> None:
        """Mark the following forwards as partial: some attention layers are skipped (a prefix cache stands in for
        the lower blocks), so each attention call is identified by its module and call count, looked up in the
        layer list of the last complete forward, instead of by its position in the call order.

        Used by :class:`attnfaith.attention.prefix.PrefixCache`; ``set_partial(False)`` returns to normal forwards.
        """
        if enabled and not self._layers:
            raise RuntimeError("set_partial needs one complete forward first (the layer list is unknown)")
        self._partial_index = {layer.name: layer.index for layer in self._layers} if enabled else None

    # ------------------------------------------------------------------ the per-layer callback
    def _on_attention(self, module: nn.Module, probs: torch.Tensor, allowed: torch.Tensor, causal: bool) -> torch.Tensor:
        count = self._calls_per_module.get(module, 0)
        self._calls_per_module[module] = count + 1
        name = self._names.get(module, type(module).__name__)
        if count:
            name = f"{name}#{count}"
        if self._partial_index is not None:
            index = self._partial_index[name]
        else:
            index = self._call_index
        self._call_index += 1
        lname = name.lower()
        cross = bool(getattr(module, "is_cross_attention", False)) or any(m in lname for m in _CROSS_MARKERS)
        self._seen.append(
            AttentionLayer(index, name, "cross" if cross else "self", bool(causal) and not cross, self.route or "",
                           probs.shape[1])
        )
        n = len(self._layers) if self._layers else None
        if self._interventions:
            probs = apply_interventions(probs, allowed, self._interventions, index, n, causal=causal)
        if self.detach or (self.keep_grad and torch.is_grad_enabled() and not probs.requires_grad):
            # a leaf: either the gradient must not flow through attention (detach), or nothing upstream requires
            # grad (frozen parameters) and keep_grad still asks for d output / d attention
            probs = probs.detach()
            if self.keep_grad and torch.is_grad_enabled():
                probs.requires_grad_(True)
        if self._wants(index, n):
            self._captured[index] = probs if self.keep_grad else probs.detach()
        return probs

    def _wants(self, index: int, n: int | None) -> bool:
        if self.capture is None:
            return False
        if self.capture == "all":
            return True
        for c in self.capture:
            if c == index or (c < 0 and (n is None or c + n == index)):
                return True
        return False

    def _key_allowed(self, shape4: torch.Size, device) -> torch.Tensor:
        B, _, Tq, Tk = shape4
        mask = self._model_key_mask
        if mask is not None and mask.shape[0] == B and mask.shape[1] == Tk:
            return mask.to(device=device, dtype=torch.bool)[:, None, None, :]
        return torch.ones(1, 1, 1, Tk, dtype=torch.bool, device=device)

    def _on_module_output(self, module, args, kwargs, output):
        if not isinstance(output, torch.Tensor) or output.dim() < 2:
            raise TypeError(
                f"modules: {self._names.get(module, module)!r} must output an attention tensor [B, Tk], [B, Tq, Tk] "
                f"or [B, H, Tq, Tk]; got {type(output).__name__}"
            )
        shape = output.shape
        p4 = _as4d(output)
        if isinstance(module, AttentionSoftmax):
            scores = args[0] if args else kwargs["scores"]
            mask = args[1] if len(args) > 1 else kwargs.get("mask")
            allowed = _as4d(module.allowed(scores, mask))
            causal = module.causal
        else:
            allowed = self._key_allowed(p4.shape, p4.device)
            causal = bool(getattr(module, "is_causal", False))
        new = self._on_attention(module, p4, allowed, causal)
        return new.reshape(shape)

    def _on_dropout_output(self, module, args, kwargs, output):
        x = args[0] if args else kwargs.get("input")
        if self._dropout_confirmed is not None:
            if module not in self._dropout_confirmed:
                return None
        else:
            if not _looks_like_attention(x):
                return None
            self._confirmed_now.add(module)
        allowed = self._key_allowed(x.shape, x.device)
        # no model-independent flag says whether such a layer is causal (BLOOM, GPT-Neo... take this route): it is
        # when no real query puts weight on a later key; then interventions must not move weight there either
        causal = self._dropout_causal.get(module)
        if causal is None:  # decided in the first forward with >= 2 queries, then kept (no sync per call)
            causal = self._causal_from_probs(x)
            if x.shape[-2] >= 2:
                self._dropout_causal[module] = causal
        if causal:
            Tq, Tk = x.shape[-2:]
            allowed = allowed & torch.ones(Tq, Tk, dtype=torch.bool, device=x.device).tril(Tk - Tq)
        # in eval mode the dropout is the identity; in training keep its random mask on the intervened weights
        new = self._on_attention(module, x, allowed, causal)
        if module.training and getattr(module, "p", 0) and new is not x:
            return nn.functional.dropout(new, p=module.p, training=True)
        return new if new is not x else None

    def _causal_from_probs(self, x: torch.Tensor) -> bool:
        """Whether ``x`` ``[B, H, Tq, Tk]`` puts no weight on keys after the query (real query rows only: fully
        masked padding rows may be uniform over every key, as eager softmax makes them)."""
        B, _, Tq, Tk = x.shape
        if Tq < 2:
            return False
        with torch.no_grad():
            future = torch.ones(Tq, Tk, dtype=torch.bool, device=x.device).triu(Tk - Tq + 1)
            mask = self._model_key_mask
            if mask is not None and Tq == Tk and tuple(mask.shape) == (B, Tk):
                future = future & mask.to(device=x.device, dtype=torch.bool)[:, None, :, None]
            return not bool((x.detach() != 0).logical_and(future).any())


def _as4d(t: torch.Tensor) -> torch.Tensor:
    if t.dim() == 2:
        return t[:, None, None, :]
    if t.dim() == 3:
        return t[:, None, :, :]
    return t


def _looks_like_attention(x) -> bool:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        return False
    with torch.no_grad():
        s = x.sum(dim=-1)
        return bool(((s - 1).abs() < 1e-3).logical_or(s.abs() < 1e-6).all() and (x >= 0).all())


def _is_int_sequence(x) -> bool:
    try:
        return all(isinstance(i, int) and not isinstance(i, bool) for i in x)
    except TypeError:
        return False
