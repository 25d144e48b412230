"""Faithfulness evaluators: ``Evaluator(model, ...).evaluate(inputs, attributions=None, target=None,
additional_forward_args=None, ...) -> Result``."""

from attnfaith.evaluators._base import Evaluator, attribution_scores
from attnfaith.evaluators.adversarial import AdversarialAttention, AdversarialAttentionResult
from attnfaith.evaluators.erasure import ErasureComparison, ErasureFlip, ErasureResult
from attnfaith.evaluators.kendall import KendallTau, KendallTauResult
from attnfaith.evaluators.permutation import PermutationTVD, PermutationTVDResult
from attnfaith.evaluators.rankings import RANKINGS
from attnfaith.evaluators.single import SingleWeightErasure, SingleWeightResult
from attnfaith.evaluators.uniform import UniformAttention, UniformAttentionResult

__all__ = [
    "Evaluator",
    "attribution_scores",
    "KendallTau",
    "KendallTauResult",
    "PermutationTVD",
    "PermutationTVDResult",
    "AdversarialAttention",
    "AdversarialAttentionResult",
    "ErasureFlip",
    "ErasureResult",
    "ErasureComparison",
    "SingleWeightErasure",
    "SingleWeightResult",
    "UniformAttention",
    "UniformAttentionResult",
    "RANKINGS",
]
