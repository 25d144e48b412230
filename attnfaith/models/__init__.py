"""Reference classifiers of the papers (Jain & Wallace 2019; Wiegreffe & Pinter 2019), built so that
:class:`attnfaith.AttentionTap` sees and can intervene on their attention."""

from attnfaith.models.reference import (
    AverageAttentionClassifier,
    BiLSTMAttentionClassifier,
    ReferenceAttentionClassifier,
)

__all__ = ["BiLSTMAttentionClassifier", "AverageAttentionClassifier", "ReferenceAttentionClassifier"]
