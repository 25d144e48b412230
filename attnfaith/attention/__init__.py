"""Attention access: the only part of attnfaith that knows about model architectures."""

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
