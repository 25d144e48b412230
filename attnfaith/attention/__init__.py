"""Attention access: the only part of attnfaith that knows about model architectures.

:mod:`~attnfaith.attention.tap` (with :mod:`~attnfaith.attention.hf`) reads and changes attention distributions,
:mod:`~attnfaith.attention.forward_args` says how a model's forward is called, :mod:`~attnfaith.attention.model_facts`
gives its dimensions, input embedding, classification head, device and dtype.
"""

from attnfaith.attention.interventions import Intervention, apply_interventions, real_key_permutation
from attnfaith.attention.tap import AttentionLayer, AttentionTap, AttentionUnreachableError, known_layers

__all__ = [
    "AttentionTap",
    "AttentionLayer",
    "AttentionUnreachableError",
    "Intervention",
    "apply_interventions",
    "real_key_permutation",
    "known_layers",
]
