"""A user's attribution method in a study, from an import path: ``attnfaith evaluate --methods module:factory``.

The factory is a callable ``factory(model) -> attribution`` in an importable module (``--methods mymod:saliency``, or
``--methods name=mymod:saliency`` to choose the method's name; default: the factory's name). ``attribution`` is any
object with Captum's ``attribute``: a Captum ``Attribution`` (``Saliency``, ``LayerIntegratedGradients``,
``FeatureAblation``, ``Lime``..., built on a forward of the user's choosing) or an attnfaith attribution. It is built
once per run on the model being evaluated and called per chunk exactly as the evaluators call a Captum attribution
(:func:`attnfaith.evaluators.attribution_scores`): ``attribute(input_ids, target=predicted class,
additional_forward_args=(attention_mask, token_type_ids, position_ids)[:as many as its forward takes])``, the input
embeddings instead of the ids for Captum's primary gradient methods, a trailing hidden axis summed.

Example (``mymod.py``)::

    from captum.attr import Saliency

    def saliency(model):
        forward = lambda embeds, mask: model(inputs_embeds=embeds, attention_mask=mask).logits.softmax(-1)
        return Saliency(forward)
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Callable

import torch

from attnfaith.study.config import PipelineError
from attnfaith.study.registry import MethodSpec, method_names, method_spec, register_method

__all__ = ["FactoryAttribution", "method_from_factory", "register_factory", "is_factory_reference"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_COLORS = ("#e377c2", "#ff7f0e", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")


def is_factory_reference(entry: str) -> bool:
    """Whether a ``--methods`` entry names a factory (``module:callable`` or ``name=module:callable``)."""
    return ":" in entry


class FactoryAttribution:
    """What a study's registry runs for a user's attribution: ``attribute_batch(batch, target)`` calls the user's
    object Captum's way (:func:`attnfaith.evaluators.attribution_scores`)."""

    def __init__(self, attribution: Any, model: torch.nn.Module, name: str) -> None:
        if not (hasattr(attribution, "attribute") or hasattr(attribution, "attribute_batch")):
            raise PipelineError(f"--methods {name}: the factory returned {type(attribution).__name__}, not an object "
                                "with Captum's .attribute (e.g. captum.attr.Saliency(forward))")
        self.attribution = attribution
        self.model = model
        self.name = name

    def attribute_batch(self, batch: Any, target: Any = None) -> torch.Tensor:
        """Scores ``[B, T]`` explaining ``target`` (None: the predicted class, which Captum is then given)."""
        from attnfaith._inputs import call_model, resolve_target
        from attnfaith.evaluators import attribution_scores

        with torch.no_grad():
            target = resolve_target(target, call_model(self.model, batch))
        return attribution_scores(self.attribution, self.model, batch, target, name=f"--methods {self.name}")


def _import(ref: str) -> Callable:
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise PipelineError(f"--methods {ref}: expected module:callable (e.g. mymod:saliency)")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PipelineError(f"--methods {ref}: cannot import {module_name!r}: {type(exc).__name__}: {exc} (is it on "
                            "PYTHONPATH or in the current folder?)") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PipelineError(f"--methods {ref}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise PipelineError(f"--methods {ref}: {attr!r} is a {type(obj).__name__}, not a callable factory(model)")
    return obj


def method_from_factory(entry: str) -> MethodSpec:
    """The :class:`MethodSpec` of a ``--methods`` entry ``[name=]module:callable`` (see the module docstring).

    ``PipelineError`` for a module that cannot be imported, a missing or non-callable attribute, a bad name."""
    name, sep, ref = entry.partition("=")
    if not sep:
        name, ref = entry.rpartition(":")[2].rpartition(".")[2], entry
    name = name.strip()
    if not _NAME.match(name):
        raise PipelineError(f"--methods {entry}: {name!r} is not a usable method name (letters, digits, _ and -)")
    factory = _import(ref.strip())

    def build(model: torch.nn.Module, config: Any, query: str) -> FactoryAttribution:
        return FactoryAttribution(factory(model), model, name)

    color = _COLORS[sum(map(ord, name)) % len(_COLORS)]
    return MethodSpec(name=name, label=name, short=name, color=color, build=build, default=False)


def register_factory(entry: str) -> str:
    """Register the method of a ``--methods`` entry ``[name=]module:callable`` (:func:`method_from_factory`) and
    return its name. The same entry again keeps its registration; a name already taken by another method is a
    ``PipelineError``."""
    spec = method_from_factory(entry)
    if spec.name in method_names():
        existing = method_spec(spec.name)
        if getattr(existing.build, "__attnfaith_factory__", None) == entry:
            return spec.name
        raise PipelineError(f"--methods {entry}: the name {spec.name!r} is already a method; choose another with "
                            f"NAME={entry.partition('=')[2] or entry}")
    spec.build.__attnfaith_factory__ = entry  # type: ignore[attr-defined]
    register_method(spec)
    return spec.name
