"""Pure functional faithfulness metrics (torch in, torch out).

Batched over a leading batch axis, masked, device-agnostic:

* :func:`kendall_tau` — masked Kendall tau-b with scipy's asymptotic p-value
  (Jain & Wallace, 2019).
* :func:`tvd`, :func:`jsd`, :func:`kl_div`, :func:`js_from_logits` — distances
  between (attention / output) distributions, in nats (Jain & Wallace, 2019;
  Serrano & Smith, 2019).
* :func:`descending_order`, :func:`topk_mask`, :func:`random_scores` — rankings
  of positions by score with padding masks (Serrano & Smith, 2019).
* :func:`bin_summary`, :func:`bin_quartiles`, :func:`bin_masks`, :func:`max_over_items`, :data:`MAX_ATTENTION_BINS`
  — a per-example value grouped by the example's largest attention weight (Jain & Wallace, 2019, violin plots).
* :func:`top_fraction_sizes`, :func:`probability_drop`, :func:`bin_aopc`, :func:`log_odds`,
  :func:`minmax_normalize`, :func:`normalized_sufficiency`, :func:`normalized_comprehensiveness`,
  :func:`curve_aopc`, :func:`exact_aopc_bounds`, :func:`normalized_aopc` — ERASER's comprehensiveness /
  sufficiency (DeYoung et al., 2020), log-odds (Shrikumar et al., 2017), soft metrics (Zhao & Aletras, 2023),
  normalised AOPC (Edin et al., 2024).
"""

from .bins import MAX_ATTENTION_BINS, Bin, bin_masks, bin_quartiles, bin_summary, max_over_items
from .divergence import js_from_logits, jsd, kl_div, tvd
from .eraser import (
    ERASER_FRACTIONS, bin_aopc, curve_aopc, exact_aopc_bounds, log_odds, minmax_normalize, normalized_aopc,
    normalized_comprehensiveness, normalized_sufficiency, probability_drop, top_fraction_sizes,
)
from .kendall import kendall_tau
from .ranking import DescendingOrder, descending_order, random_scores, topk_mask

__all__ = [
    "kendall_tau",
    "tvd",
    "jsd",
    "kl_div",
    "js_from_logits",
    "DescendingOrder",
    "descending_order",
    "topk_mask",
    "random_scores",
    "MAX_ATTENTION_BINS",
    "max_over_items",
    "Bin",
    "bin_masks",
    "bin_summary",
    "bin_quartiles",
    "ERASER_FRACTIONS",
    "top_fraction_sizes",
    "probability_drop",
    "bin_aopc",
    "log_odds",
    "minmax_normalize",
    "normalized_sufficiency",
    "normalized_comprehensiveness",
    "curve_aopc",
    "exact_aopc_bounds",
    "normalized_aopc",
]
