"""The replication recipe's own figure: Wiegreffe & Pinter's seed variance (``seed_variance.png``). The figures of
the papers' tests on the test split are the study's (``evaluation/figures/``, :mod:`attnfaith.study.plots`)."""

from __future__ import annotations

from pathlib import Path

import torch

from attnfaith.metrics import bin_masks
from attnfaith.study import plots

__all__ = ["seed_variance_figure"]


def seed_variance_figure(out: Path, sv: dict[str, torch.Tensor]) -> dict[str, str]:
    """Wiegreffe & Pinter's seed check (:func:`attnfaith.reference.wiegreffe_pinter.seed_variance`'s tensors): per
    bin of the base model's maximum attention weight, a box of the per-example median JSD(α_base, α_seed) over the
    other seeds (tick labels give each bin's n); and that JSD against the mean output difference. Returns
    ``{"seed_variance": file name}``."""
    fig, axes = plots.pyplot().subplots(1, 2, figsize=(9, 3.4))
    jsd = sv["jsd_median"].detach().double().cpu()
    data, labels = [], []
    for b in bin_masks(sv["max_attention"]):
        sel = b.mask & torch.isfinite(jsd)
        data.append(jsd[sel].numpy())
        labels.append(f"{b.label.replace(', ', ',')}\nn={int(sel.sum())}")
    axes[0].boxplot([d if d.size else [float("nan")] for d in data], positions=list(range(len(data))), widths=0.4,
                    showfliers=len(jsd) < 200)
    axes[0].set_xticks(range(len(labels)))
    axes[0].set_xticklabels(labels, fontsize=7)
    axes[0].set_xlabel("max attention (base seed)")
    axes[0].set_ylabel("median JSD(α_base, α_seed)")
    axes[1].scatter(jsd.numpy(), sv["output_diff_mean"].detach().double().cpu().numpy(), s=4, alpha=0.4)
    axes[1].set_xlabel("median JSD over seeds")
    axes[1].set_ylabel("mean |Δ output| over seeds")
    fig.suptitle("Wiegreffe & Pinter seed variance")
    plots.finish(fig, Path(out) / "seed_variance.png")
    return {"seed_variance": "seed_variance.png"}
