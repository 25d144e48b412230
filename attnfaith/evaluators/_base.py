"""What every evaluator shares: the contract of ``evaluate``, the model, the batching engine, input normalisation,
attribution resolution and the checks of common arguments."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterable

import torch
from torch import nn

from attnfaith._inputs import Batch, UserForward, call_model, positional_capacity, prepare_batch
from attnfaith.attention.forward_args import POSITIONAL_MEANING
from attnfaith.attention.model_facts import input_embedding_module, model_device
from attnfaith.attr._base import reduce_attention
from attnfaith.engine import VariantRunner
from attnfaith.evaluators.result import Result
from attnfaith.metrics import max_over_items

__all__ = ["Evaluator", "attribution_scores", "captum_forward_args", "check_items", "max_attention_of"]


#: the keywords every evaluator's constructor takes besides its own (:meth:`Evaluator.__init_subclass__`)
CAPTUM_OPTIONS = ("forward_func", "forward_output", "forward_inputs", "internal_batch_size")


class Evaluator:
    """Base class of the faithfulness evaluators: ``Evaluator(model, ...).evaluate(inputs, attributions=None, *,
    target=None, additional_forward_args=None, max_examples_per_batch=None, **options) -> Result``.

    Every evaluator's constructor and ``evaluate`` (and ``compare``) take these keywords besides their own:

    Args:
        model: a HuggingFace model or a custom model the tap reaches (see :class:`attnfaith.AttentionTap`): the
            attention is read and changed in it.
        forward_func: a Captum ``forward_func`` that calls ``model`` (e.g. ``lambda ids, mask: model(input_ids=ids,
            attention_mask=mask).logits.softmax(-1)``, or one on ``inputs_embeds``): every input the evaluator runs,
            original or perturbed, goes through it instead of ``model`` itself (:class:`attnfaith._inputs.UserForward`
            says how it is called and how its output is read). None: the model.
        forward_output: ``"auto"``, ``"logits"`` or ``"probs"``: what ``forward_func`` returns.
        forward_inputs: ``"auto"``, ``"ids"`` or ``"embeddings"``: what ``forward_func`` takes first (auto: embeddings
            when its first parameter's name contains ``embed``).
        max_examples_per_batch: variants per forward (the name of Captum's metrics); None chooses it from
            ``memory_budget``. ``internal_batch_size`` (the name of Captum's attributions) is an alias, in the
            constructor and in ``evaluate``.
        memory_budget: bytes of activation memory one forward may use (default: 2 GiB on CPU, a quarter of the
            free memory on CUDA).

    ``inputs`` may be token ids (Captum), a tokenizer's output, or raw texts with ``tokenizer=`` (a ``str``, a list of
    ``str`` or of ``(text, text_pair)`` pairs), see :mod:`attnfaith._inputs`.
    """

    forward: UserForward | None = None

    def __init__(
        self,
        model: nn.Module,
        *,
        max_examples_per_batch: int | None = None,
        memory_budget: int | None = None,
        forward_func: Callable | None = None,
        forward_output: str = "auto",
        forward_inputs: str = "auto",
        internal_batch_size: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        max_examples_per_batch = _alias(max_examples_per_batch, internal_batch_size)
        self.model = model
        self.runner = VariantRunner(model, max_examples_per_batch=max_examples_per_batch, memory_budget=memory_budget)
        if forward_func is not None:
            self.forward = UserForward(forward_func, model, output=forward_output, inputs=forward_inputs)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give every subclass the base's keywords: its ``__init__`` takes ``forward_func``, ``forward_output``,
        ``forward_inputs`` and ``internal_batch_size`` (set after its own ``__init__`` ran), its ``evaluate`` /
        ``compare`` take ``internal_batch_size`` for ``max_examples_per_batch``, so no evaluator repeats them."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not hasattr(init, "__attnfaith_options__"):
            cls.__init__ = _with_captum_options(init)
        for name in ("evaluate", "compare"):
            method = cls.__dict__.get(name)
            if method is not None and not hasattr(method, "__attnfaith_options__"):
                setattr(cls, name, _with_batch_alias(method))

    @property
    def forward_func(self) -> Callable:
        """What the evaluator runs (Captum's attribute name): the ``forward_func`` it was given, else the model."""
        return self.model if self.forward is None else self.forward.func

    def evaluate(
        self,
        inputs: Any,
        attributions: Any = None,
        *,
        target: Any = None,
        additional_forward_args: Any = None,
        max_examples_per_batch: int | None = None,
        **options: Any,
    ) -> Result:
        """Run the test on a batch and return its :class:`attnfaith.evaluators.result.Result`.

        Args:
            inputs, additional_forward_args: Captum's convention (ids + ``(attention_mask, ...)``) or a tokenizer's
                output (see :mod:`attnfaith._inputs`).
            attributions: what is tested (a ``[B, T]`` tensor, an object with Captum's ``.attribute``, a ranking
                name), or None: the evaluator's default (the model's attention; evaluators that test the attention
                itself take nothing else).
            target: the class the attributions explain (None: the predicted class).
            max_examples_per_batch: variants per forward for this call (None: the constructor's).
            options: each evaluator's own keywords; every evaluator takes ``mask`` (BoolTensor ``[B, T]`` of the
                scored positions), ``tokenizer`` and ``special_ids`` (where the special ids come from), and
                ``example_ids`` (LongTensor or sequence ``[B]`` of the rows' global example ids; default ``0..B-1``):
                every random draw of row ``b`` comes from its own CPU generator seeded
                ``example_seed(seed, example_ids[b])`` (:mod:`attnfaith.seeding`), so evaluating rows 0..9 at once
                or as two calls on 0..4 and 5..9 with those ids gives the same per-example results.
        """
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def prepare(
        self,
        inputs: Any,
        additional_forward_args: Any = None,
        *,
        mask: torch.Tensor | None = None,
        tokenizer: Any = None,
        special_ids: Iterable[int] | None = None,
    ) -> Batch:
        return prepare_batch(
            self.model, inputs, additional_forward_args, mask=mask, tokenizer=tokenizer, special_ids=special_ids,
            device=self.device, forward=self.forward,
        )

    def runner_for(self, max_examples_per_batch: int | None) -> VariantRunner:
        """The engine for one call: the constructor's unless the call overrides ``max_examples_per_batch``."""
        if max_examples_per_batch is None:
            return self.runner
        return VariantRunner(self.model, max_examples_per_batch=max_examples_per_batch,
                             memory_budget=self.runner.memory_budget)

    def logits(self, batch: Batch) -> torch.Tensor:
        return call_model(self.model, batch)


def _alias(max_examples_per_batch: int | None, internal_batch_size: int | None) -> int | None:
    """``max_examples_per_batch``, or Captum's ``internal_batch_size`` for it; ``TypeError`` when both are given."""
    if internal_batch_size is None:
        return max_examples_per_batch
    if max_examples_per_batch is not None:
        raise TypeError("pass max_examples_per_batch or internal_batch_size (Captum's name for it), not both")
    return internal_batch_size


def _with_signature(wrapper: Callable, wrapped: Callable, names: Iterable[str]) -> Callable:
    """``wrapper`` showing ``wrapped``'s signature plus the keyword-only ``names`` (before any ``**kwargs``)."""
    try:
        sig = inspect.signature(wrapped)
    except (TypeError, ValueError):  # pragma: no cover
        return wrapper
    params = list(sig.parameters.values())
    tail = [p for p in params if p.kind == p.VAR_KEYWORD]
    params = [p for p in params if p.kind != p.VAR_KEYWORD]
    defaults = {"forward_output": "auto", "forward_inputs": "auto"}
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(n))
               for n in names if n not in sig.parameters]
    wrapper.__signature__ = sig.replace(parameters=params + tail)
    wrapper.__attnfaith_options__ = True
    return wrapper


def _with_captum_options(init: Callable) -> Callable:
    """A subclass ``__init__`` that also takes :data:`CAPTUM_OPTIONS` (see :meth:`Evaluator.__init_subclass__`)."""

    @functools.wraps(init)
    def __init__(self, *args: Any, forward_func: Callable | None = None, forward_output: str = "auto",
                 forward_inputs: str = "auto", internal_batch_size: int | None = None, **kwargs: Any) -> None:
        if internal_batch_size is not None:
            kwargs["max_examples_per_batch"] = _alias(kwargs.get("max_examples_per_batch"), internal_batch_size)
        init(self, *args, **kwargs)
        if forward_func is not None:
            self.forward = UserForward(forward_func, self.model, output=forward_output, inputs=forward_inputs)
        elif (forward_output, forward_inputs) != ("auto", "auto"):
            raise TypeError("forward_output / forward_inputs describe a forward_func; none was given")

    return _with_signature(__init__, init, CAPTUM_OPTIONS)


def _with_batch_alias(method: Callable) -> Callable:
    """``evaluate`` / ``compare`` also taking ``internal_batch_size`` for ``max_examples_per_batch``."""

    @functools.wraps(method)
    def wrapper(self, *args: Any, internal_batch_size: int | None = None, **kwargs: Any) -> Any:
        if internal_batch_size is not None:
            kwargs["max_examples_per_batch"] = _alias(kwargs.get("max_examples_per_batch"), internal_batch_size)
        return method(self, *args, **kwargs)

    return _with_signature(wrapper, method, ("internal_batch_size",))


def check_items(batch: Batch, name: str = "inputs", minimum: int = 1) -> None:
    """``ValueError`` naming ``name`` if an example has fewer than ``minimum`` items."""
    n = batch.n_items
    bad = (n < minimum).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"{name}: example(s) {bad} have fewer than {minimum} real item(s) to erase (items are the real, "
            "non-special, non-padding tokens, or the positions of mask=)"
        )


def max_attention_of(att: torch.Tensor, query: Any, batch: Batch) -> torch.Tensor:
    """``[B]``: the largest weight on an item of a layer's attention ``[B, H, Tq, Tk]`` reduced as
    :class:`attnfaith.attr.AttentionAttribution` does (mean over heads of the ``query`` row; the single row of
    one-query attention): :func:`attnfaith.metrics.max_over_items` over ``batch.items`` (over every key when the keys
    are not the input tokens). 0 for an example without items."""
    scores = reduce_attention(att.float(), "mean", query, batch.attention_mask)
    return max_over_items(scores, batch.items if scores.shape == batch.items.shape else None)


def attribution_scores(attributions: Any, model: nn.Module, batch: Batch, target: torch.Tensor,
                       name: str = "attributions") -> torch.Tensor:
    """Scores ``[B, T]`` from a tensor or an object with Captum's ``.attribute``, validated.

    * a tensor ``[B, T]`` is used as given;
    * an attnfaith attribution (``attribute_batch``) runs on the normalised batch;
    * any other object with ``.attribute`` (a Captum ``Attribution`` such as ``LayerIntegratedGradients``,
      ``Saliency``, ``FeatureAblation``, ``Lime``) is called Captum's way:
      ``attribute(input_ids, target=target, additional_forward_args=(attention_mask, ...))``; a trailing hidden axis
      (``[B, T, D]``, as attributions to embeddings are) is summed. Captum's primary gradient methods
      (``IntegratedGradients``, ``Saliency``, ``InputXGradient``, ``DeepLift``..., also inside ``NoiseTunnel``) cannot
      take integer ids: they get the input embeddings ``[B, T, D]`` instead (their ``forward_func`` must take
      ``(inputs_embeds, attention_mask, ...)``), and the result is summed over ``D``.

    ``ValueError`` naming ``name`` for a wrong shape or NaN/inf at a scored position.
    """
    if isinstance(attributions, torch.Tensor):
        scores = attributions
    elif hasattr(attributions, "attribute_batch"):
        scores = attributions.attribute_batch(batch, target)
    elif hasattr(attributions, "attribute"):
        first = _input_embeddings(model, batch) if _takes_embeddings(attributions) else batch.input_ids
        scores = attributions.attribute(first, target=target,
                                        additional_forward_args=captum_forward_args(attributions, batch))
        if isinstance(scores, tuple):
            scores = scores[0]
    elif isinstance(attributions, str):
        raise ValueError(
            f"{name}={attributions!r}: a method name is not accepted here; pass a [B, T] tensor or an attribution "
            "object with .attribute (e.g. attnfaith.AttentionAttribution(model))"
        )
    else:
        raise TypeError(
            f"{name} must be a [B, T] tensor or an object with Captum's .attribute; got {type(attributions).__name__}"
        )
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"{name}: the attribution returned {type(scores).__name__}, expected a tensor")
    scores = scores.detach()
    if scores.dim() == 3 and scores.shape[:2] == batch.input_ids.shape:
        scores = scores.sum(dim=-1)
    if scores.dim() == 1 and batch.size == 1:
        scores = scores[None]
    if tuple(scores.shape) != tuple(batch.input_ids.shape):
        raise ValueError(
            f"{name} has shape {tuple(scores.shape)} but the inputs are {tuple(batch.input_ids.shape)} "
            "(one score per token expected)"
        )
    scores = scores.to(device=batch.device, dtype=torch.float32 if not scores.is_floating_point() else scores.dtype)
    if not torch.isfinite(scores[batch.items]).all():
        raise ValueError(f"{name} contains NaN or inf at scored positions")
    return scores


def captum_forward_args(attributions: Any, batch: Batch) -> tuple:
    """The ``additional_forward_args`` a Captum attribution is called with, so that its ``forward_func`` gets
    exactly what its signature takes: the batch's attention mask, token type ids and position ids, in that order
    (:data:`attnfaith.attention.forward_args.POSITIONAL_MEANING`), as many as the function takes after its inputs
    (all of them for ``*args``), trailing ones the batch does not have left out. A user's
    ``forward = lambda ids, mask: ...`` gets ``(mask,)`` even for a tokenizer batch with ``token_type_ids``."""
    values = [batch.attention_mask, *(batch.token_args.get(n) for n in POSITIONAL_MEANING[1:])]
    inner = getattr(attributions, "attribution_method", attributions)  # NoiseTunnel wraps another method
    forward = getattr(inner, "forward_func", None)
    capacity = positional_capacity(forward) if callable(forward) else None
    args = values if capacity is None else values[:capacity]
    while args and args[-1] is None:
        args.pop()
    return tuple(args)


def _takes_embeddings(attributions: Any) -> bool:
    """True for Captum's primary gradient attributions (not layer/neuron ones), which need float inputs."""
    try:
        from captum.attr._utils.attribution import GradientAttribution, LayerAttribution, NeuronAttribution
    except Exception:  # pragma: no cover - captum missing
        return False
    inner = getattr(attributions, "attribution_method", attributions)  # NoiseTunnel wraps another method
    return isinstance(inner, GradientAttribution) and not isinstance(inner, (LayerAttribution, NeuronAttribution))


def _input_embeddings(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The (encoder) input token embeddings of the batch ``[B, T, D]``, detached."""
    try:
        module = input_embedding_module(model)
    except Exception:
        get = getattr(model, "get_input_embeddings", None)
        module = get() if callable(get) else None
    if module is None:
        raise TypeError("attributions: a Captum gradient method on embeddings needs model.get_input_embeddings()")
    with torch.no_grad():
        return module(batch.input_ids).detach().requires_grad_(True)
