"""Wiegreffe & Pinter's (2019) checks that need retraining, for the reference models.

* **Seed variance** (WP §3, ``seed_graphs.py``): the same model trained with other seeds (:data:`~attnfaith.reference.
  config.WP_SEEDS`, the same initial vectors); per test instance the median over seeds of ``JSD(α_base, α_seed)``
  (nats, at most ln 2) and the mean over seeds of the output difference (:func:`seed_variance`), binned by the base
  model's maximum attention; with each seed's test accuracy and Jain & Wallace's Table 2.
* **Uniform-attention training baseline** (WP §3, ``--attention frozen``): the model trained with attention frozen
  to uniform over the real tokens; its dev and test metrics next to the learned attention's.

Uniform attention *at inference* needs no training and is part of the test-split evaluation
(:mod:`attnfaith.reference.evaluation`).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Sequence

import torch

from attnfaith.metrics import bin_quartiles, jsd, tvd
from attnfaith.reference.config import WP_SEEDS, ReplicationConfig
from attnfaith.reference.evaluation import kendall_summaries
from attnfaith.reference.splits import Splits
from attnfaith.reference.trained_model import TrainedModel, train_model, train_summary
from attnfaith.reference.vectors import word_vectors
from attnfaith.results import pad_cat

__all__ = ["seed_variance", "attention_and_probs", "wiegreffe_pinter_checks"]


def attention_and_probs(tm: TrainedModel, texts: Sequence[str], device: torch.device | str,
                        batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention ``[N, T]`` (right-padded with 0) and output probabilities ``[N, C]`` of a reference model."""
    atts, probs = [], []
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            enc = tm.vocab.encode(list(texts[s : s + batch_size]))
            logits, att = tm.model(enc["input_ids"].to(device), enc["attention_mask"].to(device),
                                   return_attention=True)
            atts.append(att.float().cpu())
            probs.append(torch.softmax(logits.float(), -1).cpu())
    return pad_cat(atts, 0.0), torch.cat(probs)


def seed_variance(base_attention: torch.Tensor, base_probs: torch.Tensor,
                  other_attentions: Sequence[torch.Tensor], other_probs: Sequence[torch.Tensor]) -> dict[str, Any]:
    """Wiegreffe & Pinter's seed check, per instance ``n``: ``jsd_median[n]`` = the median over the other seeds ``s``
    of ``JSD(α_base[n], α_s[n])`` (nats; attention right-padded with 0 to a common width; the mean of the two middle
    values for an even number of seeds), ``output_diff_mean[n]`` = the mean over seeds of ``TVD(p_base[n], p_s[n])``
    (``|ŷ_s − ŷ_base|`` for binary outputs); also ``jsd_per_seed`` / ``output_diff_per_seed`` ``[N, S]`` and
    ``max_attention`` ``[N]`` (the base model's, for binning)."""
    if not other_attentions:
        raise ValueError("other_attentions: at least one other seed is needed")
    n = base_attention.shape[0]
    if any(a.shape[0] != n for a in other_attentions):
        raise ValueError("other_attentions: every seed's attention needs the base's number of instances")
    base, *others = pad_cat([base_attention.double(), *(a.double() for a in other_attentions)], 0.0).split(n)
    js = torch.stack([jsd(base, a) for a in others], dim=1)  # [N, S]
    out = torch.stack([tvd(base_probs.double(), p.double()) for p in other_probs], dim=1)
    return {
        "jsd_median": js.median(dim=1).values if js.shape[1] % 2 else js.quantile(0.5, dim=1),
        "jsd_per_seed": js,
        "output_diff_mean": out.mean(dim=1),
        "output_diff_per_seed": out,
        "max_attention": base.max(dim=1).values,
    }


def wiegreffe_pinter_checks(cfg: ReplicationConfig, splits: Splits, tm: TrainedModel, rows: Sequence[int],
                            learned_metrics: dict[str, dict[str, float]], *, log: Callable[[str], None] = print,
                            timed: Callable[[str], ContextManager] | None = None,
                            ) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """The checks of the module docstring for the reference model ``tm`` (``cfg.seeds`` other seeds, and the
    uniform baseline when ``cfg.uniform_training``): ``(results.json's "wiegreffe_pinter", the seed-variance
    tensors or None)``. ``rows``: the evaluated test rows (each seed's Table 2); ``learned_metrics``: ``{"dev": ...,
    "test": ...}`` of ``tm``; ``timed(stage)``: a context manager timing each stage."""
    import contextlib

    timed = timed or (lambda name: contextlib.nullcontext())
    device = torch.device(cfg.device)
    test = splits.test
    # the same initial vectors for every seed (recomputed: cheap)
    need = cfg.vectors and (cfg.seeds > 0 or cfg.uniform_training)
    vectors = word_vectors(cfg.vectors, tm.vocab, cfg.embed_dim, cfg.data_root, norm=cfg.vectors_norm) if need else None
    wp: dict[str, Any] = {}
    sv = None
    if cfg.seeds > 0:
        with timed("seed_variance"):
            base_att, base_p = attention_and_probs(tm, test.texts, device)
            others_att, others_p, seed_runs = [], [], []
            for s in WP_SEEDS[: cfg.seeds]:
                log(f"  training seed {s}")
                other = train_model(cfg, splits, seed=s, vocab=tm.vocab, vectors=vectors, log=log)
                other.model.to(device).eval()
                a, p = attention_and_probs(other, test.texts, device)
                others_att.append(a)
                others_p.append(p)
                run = {"seed": s, "test": other.metrics(test, device), **train_summary(other)}
                if "kendall" in cfg.tests:
                    run["kendall"] = kendall_summaries(other, test, cfg, rows)
                seed_runs.append(run)
            sv = seed_variance(base_att, base_p, others_att, others_p)
        wp["seed_variance"] = {
            "seeds": list(WP_SEEDS[: cfg.seeds]),
            "base_seed": cfg.seed,
            "runs": seed_runs,
            "n": int(sv["jsd_median"].numel()),
            "jsd_median_mean": float(sv["jsd_median"].mean()),
            "jsd_median_median": float(sv["jsd_median"].median()),
            "output_diff_mean": float(sv["output_diff_mean"].mean()),
            "bins": bin_quartiles(sv["jsd_median"], sv["max_attention"]),
            "output_diff_bins": bin_quartiles(sv["output_diff_mean"], sv["max_attention"]),
            "jsd_median": sv["jsd_median"],
            "output_diff": sv["output_diff_mean"],
            "max_attention": sv["max_attention"],
        }
    if cfg.uniform_training:
        with timed("uniform_training"):
            uni_tm = train_model(cfg, splits, uniform=True, vocab=tm.vocab, vectors=vectors, log=log)
            uni_tm.model.to(device).eval()
            wp["uniform_training"] = {
                "learned": learned_metrics,
                "uniform": {"dev": uni_tm.metrics(splits.dev, device), "test": uni_tm.metrics(test, device),
                            **train_summary(uni_tm)},
            }
    return wp, sv
