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
"""

from .bins import MAX_ATTENTION_BINS, Bin, bin_masks, bin_quartiles, bin_summary, max_over_items
from .divergence import js_from_logits, jsd, kl_div, tvd
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
]
