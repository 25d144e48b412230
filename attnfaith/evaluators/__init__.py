"""Faithfulness evaluators: ``Evaluator(model, ...).evaluate(inputs, attributions=None, *, target=None,
additional_forward_args=None, max_examples_per_batch=None, **options) -> Result``.

Every result subclasses :class:`attnfaith.evaluators.result.Result` (``len``, ``summary``, ``to_dict``, ``concat``,
``records``); layer, head and query choices are checked and resolved by :mod:`attnfaith.evaluators.selection`."""

from attnfaith.evaluators._base import Evaluator, attribution_scores
from attnfaith.evaluators.adversarial import AdversarialAttention, AdversarialAttentionResult
from attnfaith.evaluators.erasure import ErasureComparison, ErasureFlip, ErasureResult
from attnfaith.evaluators.eraser import Comprehensiveness, Sufficiency, TopKResult
from attnfaith.evaluators.log_odds import LogOdds
from attnfaith.evaluators.normalized_aopc import AOPCBounds, NormalizedAOPC, NormalizedAOPCResult
from attnfaith.evaluators.soft_eraser import SoftComprehensiveness, SoftEraserResult, SoftSufficiency
from attnfaith.evaluators.kendall import KendallTau, KendallTauResult
from attnfaith.evaluators.permutation import PermutationTVD, PermutationTVDResult
from attnfaith.evaluators.rankings import RANKINGS
from attnfaith.evaluators.result import Result
from attnfaith.evaluators.single import SingleWeightErasure, SingleWeightResult
from attnfaith.evaluators.uniform import UniformAttention, UniformAttentionResult

__all__ = [
    "Evaluator",
    "Result",
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
    "Comprehensiveness",
    "Sufficiency",
    "TopKResult",
    "LogOdds",
    "SoftComprehensiveness",
    "SoftSufficiency",
    "SoftEraserResult",
    "NormalizedAOPC",
    "NormalizedAOPCResult",
    "AOPCBounds",
    "SingleWeightErasure",
    "SingleWeightResult",
    "UniformAttention",
    "UniformAttentionResult",
    "RANKINGS",
]
