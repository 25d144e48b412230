"""attnfaith: is this explanation faithful?

Faithfulness tests for attention weights and any other attribution method, following Jain & Wallace (2019),
Serrano & Smith (2019) and Wiegreffe & Pinter (2019), on any HuggingFace transformer and on custom attention models,
with Captum's interface.
"""

__version__ = "0.1.0"

from attnfaith.attention import AttentionLayer, AttentionTap, AttentionUnreachableError
from attnfaith.attr import AttentionAttribution, AttentionGradient, AttentionRollout, AttentionXGradient
from attnfaith.attr import GradientImportance, LeaveOneOut, integrated_gradients
from attnfaith.evaluators import AdversarialAttention, KendallTau, PermutationTVD
from attnfaith.evaluators import ErasureFlip, SingleWeightErasure, UniformAttention
from attnfaith.evaluators import Comprehensiveness, LogOdds, NormalizedAOPC, SoftComprehensiveness, SoftSufficiency
from attnfaith.evaluators import Sufficiency
from attnfaith.nn import AttentionSoftmax
from attnfaith.study import EvaluationConfig, StudyResults, evaluate, load_results, run_evaluation

__all__ = [
    "AttentionTap",
    "AttentionLayer",
    "AttentionUnreachableError",
    "AttentionSoftmax",
    "AttentionAttribution",
    "AttentionRollout",
    "AttentionGradient",
    "AttentionXGradient",
    "GradientImportance",
    "LeaveOneOut",
    "integrated_gradients",
    "KendallTau",
    "PermutationTVD",
    "AdversarialAttention",
    "ErasureFlip",
    "SingleWeightErasure",
    "UniformAttention",
    "Comprehensiveness",
    "Sufficiency",
    "SoftComprehensiveness",
    "SoftSufficiency",
    "LogOdds",
    "NormalizedAOPC",
    "evaluate",
    "load_results",
    "StudyResults",
    "run_evaluation",
    "EvaluationConfig",
    "__version__",
]
