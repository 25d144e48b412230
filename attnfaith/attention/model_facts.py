"""What attnfaith knows about a model's architecture outside the attention tap: its dimensions, its input embedding,
its classification head, and where its weights live.

Every rule reads the model's config or its modules, never the class name:

* :func:`model_dims`: hidden size, number of layers and number of attention heads, from the config (under the names
  HuggingFace configs use, mapped names included), else guessed from the parameters;
* :func:`input_embedding_module`: the module whose output is the embedding of the (encoder) input tokens;
* :data:`HEAD_MODULE_NAMES`, :func:`is_head_parameter`, :func:`head_parameter_names`: which parameters belong to the
  sequence-classification head;
* :func:`model_device`, :func:`model_dtype`: the device and dtype of the first parameter.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = [
    "ModelDims",
    "model_dims",
    "input_embedding_module",
    "HEAD_MODULE_NAMES",
    "is_head_parameter",
    "head_parameter_names",
    "model_device",
    "model_dtype",
]

_HIDDEN_KEYS = ("hidden_size", "d_model", "n_embd")
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")
_HEAD_KEYS = ("num_attention_heads", "n_head", "num_heads")

HEAD_MODULE_NAMES: tuple[str, ...] = ("classifier", "score", "classification_head", "logits_proj", "pre_classifier")
"""Names of the modules that make up a sequence-classification head in transformers' ``*ForSequenceClassification``
classes: ``classifier`` (BERT, RoBERTa's ``classifier.dense`` / ``classifier.out_proj``, ELECTRA, DeBERTa,
ModernBERT...), ``pre_classifier`` (DistilBERT), ``score`` (GPT-2, Llama, Qwen2...), ``classification_head``
(BART), ``logits_proj`` (XLNet)."""


class ModelDims(NamedTuple):
    """A model's dimensions (see :func:`model_dims`)."""

    hidden_size: int
    num_layers: int
    num_heads: int


def _first_config_value(config: object, keys: tuple[str, ...]) -> object:
    for key in keys:
        value = getattr(config, key, None)
        if value:
            return value
    return None


def model_dims(model: nn.Module) -> ModelDims:
    """``(hidden_size, num_layers, num_heads)`` of ``model``.

    Each is the first non-zero value among the config's attributes (``model.config``; HuggingFace configs also
    answer to their mapped names: DistilBERT's ``dim`` as ``hidden_size``, BART's ``encoder_layers`` as
    ``num_hidden_layers``...):

    * hidden size: ``hidden_size``, ``d_model``, ``n_embd``; without one, the largest last dimension of the model's
      2-D parameters (256 for a model without any);
    * layers: ``num_hidden_layers``, ``n_layer``, ``num_layers``; else 2;
    * heads: ``num_attention_heads``, ``n_head``, ``num_heads``; else 1.
    """
    config = getattr(model, "config", None)
    hidden = _first_config_value(config, _HIDDEN_KEYS)
    layers = _first_config_value(config, _LAYER_KEYS)
    heads = _first_config_value(config, _HEAD_KEYS)
    if hidden is None:
        widths = [p.shape[-1] for p in model.parameters() if p.dim() == 2]
        hidden = max(widths) if widths else 256
    return ModelDims(int(hidden), int(layers or 2), int(heads or 1))


def input_embedding_module(model: nn.Module) -> nn.Module:
    """The module whose output is the embedding of the (encoder) input tokens.

    ``model.get_encoder().get_input_embeddings()`` (else the encoder's ``embed_tokens``) for encoder–decoder models,
    that is when ``model.get_encoder()`` returns a module other than ``model`` (BART's and T5's encoders call their
    own ``embed_tokens`` module, which shares its weight with ``model.get_input_embeddings()`` but is a different
    module, so a hook on the shared one never fires); else ``model.get_input_embeddings()``.

    Raises:
        TypeError: the model has no ``get_input_embeddings()`` returning a module.
    """
    get_encoder = getattr(model, "get_encoder", None)
    if callable(get_encoder):
        try:
            encoder = get_encoder()
        except Exception:  # pragma: no cover - models whose get_encoder raises for decoder-only configs
            encoder = None
        if isinstance(encoder, nn.Module) and encoder is not model:
            get = getattr(encoder, "get_input_embeddings", None)
            emb = get() if callable(get) else getattr(encoder, "embed_tokens", None)
            if isinstance(emb, nn.Module):
                return emb
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    if not isinstance(emb, nn.Module):
        raise TypeError(
            f"model: {type(model).__name__} has no get_input_embeddings() returning a module; gradient and integrated "
            "gradients attributions need the token embedding"
        )
    return emb


def is_head_parameter(name: str) -> bool:
    """Whether the parameter (or state-dict key) ``name`` belongs to the classification head: one of its dot-separated
    parts is in :data:`HEAD_MODULE_NAMES` (``classifier.out_proj.weight``, ``score.weight``,
    ``classification_head.dense.bias``; not ``model.encoder.layers.0.self_attn.out_proj.weight``)."""
    return any(part in HEAD_MODULE_NAMES for part in name.split("."))


def head_parameter_names(model: nn.Module) -> list[str]:
    """The names of ``model.named_parameters()`` that :func:`is_head_parameter` accepts, in the model's order."""
    return [name for name, _ in model.named_parameters() if is_head_parameter(name)]


def model_device(model: nn.Module, default: torch.device | str | None = "cpu") -> torch.device | None:
    """The device of the model's first parameter (``model.parameters()`` order); ``torch.device(default)`` for a
    model without parameters (None when ``default`` is None: inputs then stay where they are)."""
    for p in model.parameters():
        return p.device
    return None if default is None else torch.device(default)


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first parameter (``model.parameters()`` order); None for a model without
    parameters."""
    for p in model.parameters():
        return p.dtype
    return None
