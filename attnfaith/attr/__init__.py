"""Token attributions with Captum's interface: ``Cls(model, ...).attribute(inputs, target=None,
additional_forward_args=None) -> [B, T]``."""

from attnfaith.attr._base import TokenAttribution, reduce_attention
from attnfaith.attr.attention import AttentionAttribution, AttentionGradient, AttentionRollout, AttentionXGradient
from attnfaith.attr.gradient import GradientImportance
from attnfaith.attr.ig import EmbeddingIntegratedGradients, ig_baseline, integrated_gradients
from attnfaith.attr.loo import LeaveOneOut

__all__ = [
    "TokenAttribution",
    "reduce_attention",
    "AttentionAttribution",
    "AttentionRollout",
    "AttentionGradient",
    "AttentionXGradient",
    "GradientImportance",
    "LeaveOneOut",
    "EmbeddingIntegratedGradients",
    "integrated_gradients",
    "ig_baseline",
]
