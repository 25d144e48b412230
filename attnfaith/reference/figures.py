"""The replication recipe's figures (PNG, matplotlib's Agg backend), drawn from the joined evaluator results.

* ``kendall_<explanation>``: histograms of τ(explanation, gradient) and τ(explanation, leave-one-out) per predicted
  class (Jain & Wallace, Figure 2);
* ``permutation_<explanation>``: median ΔTVD under permuted attention by the bin of the explanation's maximum
  weight, violin + box per predicted class (JW §4.2);
* ``single_weight_<explanation>``: histogram of ΔJS = JS(remove top) − JS(remove random) (Serrano & Smith §4);
* ``erasure_fractions`` (``_token``): box plot of the fraction removed before a flip per ranking (SS §5);
* ``seed_variance``: Wiegreffe & Pinter's seed JSD by max-attention bin, and JSD against the output difference.

Each function returns ``{figure key: file name}`` for ``results.json``'s ``"figures"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnfaith.metrics import bin_masks
from attnfaith.reference.evaluation import TestSplitResults

__all__ = ["evaluation_figures", "seed_variance_figure"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, key: str) -> dict[str, str]:
    path = out / f"{key}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return {key: path.name}


def _violin_box_by_bin(ax, values: torch.Tensor, max_attention: torch.Tensor, keep: torch.Tensor | None = None) -> None:
    """Finite ``values`` (of the examples in ``keep``) per max-attention bin: a violin (bins with 2+ values) and a box;
    x tick labels give each bin's count."""
    v = values.detach().double().cpu()
    ok = torch.isfinite(v) if keep is None else torch.isfinite(v) & keep.cpu()
    data, labels = [], []
    for b in bin_masks(max_attention):
        sel = b.mask & ok
        data.append(v[sel].numpy())
        labels.append(f"{b.label.replace(', ', ',')}\nn={int(sel.sum())}")
    pos = [i for i, d in enumerate(data) if d.size > 1]
    if pos:
        ax.violinplot([data[i] for i in pos], positions=pos, showextrema=False)
    ax.boxplot([d if d.size else np.array([np.nan]) for d in data], positions=list(range(len(data))), widths=0.15,
               showfliers=False)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=7)


def _explanation_figures(out: Path, name: str, res: TestSplitResults) -> dict[str, str]:
    plt = _plt()
    e = res.explanations[name]
    safe = name.replace(" ", "_")
    figs: dict[str, str] = {}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, r, title in ((axes[0], e.kendall_gradient, "τ(attention, gradient)"),
                         (axes[1], e.kendall_loo, "τ(attention, leave-one-out)")):
        tau, pred = r.tau.double().cpu(), r.predicted.cpu()
        for c in sorted(set(pred.tolist())):
            t = tau[(pred == c) & torch.isfinite(tau)].numpy()
            if t.size:
                ax.hist(t, bins=20, range=(-1, 1), alpha=0.55, label=f"predicted {c}")
        ax.set_title(title)
        ax.set_xlabel("Kendall τ")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("instances")
    figs.update(_save(fig, out, f"kendall_{safe}"))

    pred = res.permutation.predicted.cpu()
    classes = sorted(set(pred.tolist()))
    fig, axes = plt.subplots(1, len(classes), figsize=(4.2 * len(classes), 3.4), sharey=True, squeeze=False)
    for ax, c in zip(axes[0], classes):
        _violin_box_by_bin(ax, res.permutation.median, e.max_attention, keep=pred == c)
        ax.set_title(f"predicted {c}")
        ax.set_xlabel(f"max {name}")
    axes[0][0].set_ylabel("median ΔTVD over permutations")
    figs.update(_save(fig, out, f"permutation_{safe}"))

    d = e.single_weight.delta_js.double().cpu()
    d = d[torch.isfinite(d)].numpy()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    if d.size:
        ax.hist(d, bins=40, color="tab:blue")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("ΔJS = JS(remove top) − JS(remove random)  [nats]")
    ax.set_ylabel("instances")
    ax.set_title(f"single-weight erasure ({name})")
    figs.update(_save(fig, out, f"single_weight_{safe}"))
    return figs


def _erasure_figure(out: Path, erasure: dict[str, Any], level: str, layer: int) -> dict[str, str]:
    plt = _plt()
    names = list(erasure)
    data = []
    for n in names:
        f = erasure[n].fraction_removed.double().cpu()
        data.append(f[torch.isfinite(f)].numpy())
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.4))
    ax.boxplot([d if d.size else np.array([np.nan]) for d in data], showfliers=False)
    ax.set_xticks(range(1, len(names) + 1))
    ax.set_xticklabels([n.replace("_", "\n") for n in names], fontsize=8)
    ax.set_ylabel("fraction of items removed\nbefore the decision flips")
    where = "last layer" if layer == -1 else f"layer {layer}"
    ax.set_title("decision-flip erasure (" + (f"attention weights zeroed, {where}" if level == "attention"
                                            else "tokens deleted") + ")")
    return _save(fig, out, "erasure_fractions" if level == "attention" else f"erasure_fractions_{level}")


def evaluation_figures(out: Path, res: TestSplitResults, layer: int = -1) -> dict[str, str]:
    """Every figure of the test-split evaluation (see the module docstring) into ``out``."""
    figs: dict[str, str] = {}
    for name in res.explanations:
        figs.update(_explanation_figures(out, name, res))
    for level, erasure in res.erasure.items():
        figs.update(_erasure_figure(out, erasure, level, layer))
    return figs


def seed_variance_figure(out: Path, sv: dict[str, torch.Tensor]) -> dict[str, str]:
    """Wiegreffe & Pinter's seed check (:func:`attnfaith.reference.wiegreffe_pinter.seed_variance`'s tensors)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    _violin_box_by_bin(axes[0], sv["jsd_median"], sv["max_attention"])
    axes[0].set_xlabel("max attention (base seed)")
    axes[0].set_ylabel("median JSD(α_base, α_seed)")
    axes[1].scatter(sv["jsd_median"].numpy(), sv["output_diff_mean"].numpy(), s=4, alpha=0.4)
    axes[1].set_xlabel("median JSD over seeds")
    axes[1].set_ylabel("mean |Δ output| over seeds")
    fig.suptitle("Wiegreffe & Pinter seed variance")
    return _save(fig, out, "seed_variance")
