"""Token attributions with Captum's interface: ``Cls(model, ...).attribute(inputs, target=None,
additional_forward_args=None) -> [B, T]``."""

from attnfaith.attr._base import TokenAttribution, reduce_attention
from attnfaith.attr.attention import AttentionAttribution, AttentionGradient, AttentionRollout, AttentionXGradient

__all__ = [
    "TokenAttribution",
    "reduce_attention",
    "AttentionAttribution",
    "AttentionRollout",
    "AttentionGradient",
    "AttentionXGradient",
]
