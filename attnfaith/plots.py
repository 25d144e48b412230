"""Figures of a faithfulness run (matplotlib, Agg backend, imported lazily: ``pip install 'attnfaith[plot]'``).

Every function reads the ``results.json`` dict of :func:`attnfaith.pipeline.run_evaluation` and writes one PNG;
:func:`make_figures` writes all that the run has data for and returns, per figure, its path (relative to the run
folder), title and caption, which ``report.md`` shows.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from attnfaith.report import METHOD_LABELS, finite_values

__all__ = [
    "make_figures",
    "erasure_curves",
    "flip_boxplot",
    "kendall_histograms",
    "permutation_violin",
    "single_delta_js_histogram",
    "token_heatmap",
]

COLORS = {
    "attention": "#1f77b4",
    "rollout": "#17becf",
    "gradient": "#2ca02c",
    "ig": "#9467bd",
    "loo": "#d62728",
    "random": "#7f7f7f",
}
LABELS = METHOD_LABELS  # the methods' display names, as in report.md
SHORT = {
    "attention": "attention",
    "rollout": "rollout",
    "gradient": "grad×input",
    "ig": "IG",
    "loo": "LOO",
    "random": "random",
}
BINS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _methods(run: Mapping[str, Any]) -> list[str]:
    skipped = run.get("skipped", {})
    return [m for m in run["config"]["methods"] if m not in skipped]


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)


def _finish(fig, path: Path, drawn: bool = True) -> bool:
    """Lay ``fig`` out and write it to ``path`` if anything was drawn, else close it unsaved; returns ``drawn``."""
    fig.tight_layout()
    if drawn:
        _save(fig, path)
    else:
        _plt().close(fig)
    return drawn


# -------------------------------------------------------------------------------------------------------------


def _levels(run) -> list[str]:
    out = []
    for level in ("token", "attention"):
        if any(ex.get(f"erasure_{level}") for ex in run["examples"]):
            out.append(level)
    return out


def _level_panels(run):
    """``(fig, [(ax, level), ...])``: one panel per erasure level the run has; None when it has none."""
    levels = _levels(run)
    if not levels:
        return None
    fig, axes = _plt().subplots(1, len(levels), figsize=(6.2 * len(levels), 4.2), squeeze=False)
    return fig, list(zip(axes[0], levels))


def _level_title(run, level: str) -> str:
    return "token deletion" if level == "token" else f"attention erasure (layer {run['config']['layer']})"


def erasure_curves(run: Mapping[str, Any], path: Path, grid_points: int = 21) -> bool:
    """Mean probability of the originally predicted class against the fraction of items removed, one line per
    method, with a 95 % band (mean ± 1.96 standard errors over examples); one panel per erasure level. Each
    example's curve (points at k / n) is interpolated linearly onto a common grid."""
    made = _level_panels(run)
    if made is None:
        return False
    fig, panels = made
    grid = np.linspace(0.0, 1.0, grid_points)
    drawn = False
    for ax, level in panels:
        for m in _methods(run):
            rows = []
            for ex in run["examples"]:
                rec = (ex.get(f"erasure_{level}") or {}).get(m)
                if not rec or not rec["curve"] or len(rec["curve"]) < 2:
                    continue
                c = np.asarray([np.nan if v is None else v for v in rec["curve"]], dtype=np.float64)
                x = np.arange(len(c)) / (len(c) - 1)
                ok = np.isfinite(c)
                if ok.sum() < 2:
                    continue
                rows.append(np.interp(grid, x[ok], c[ok]))
            if not rows:
                continue
            Y = np.vstack(rows)
            mean = Y.mean(0)
            se = Y.std(0, ddof=1) / math.sqrt(len(Y)) if len(Y) > 1 else np.zeros_like(mean)
            color = COLORS.get(m)
            ax.plot(grid, mean, color=color, label=f"{LABELS.get(m, m)} (n={len(Y)})", lw=2)
            ax.fill_between(grid, mean - 1.96 * se, mean + 1.96 * se, color=color, alpha=0.18, lw=0)
            drawn = True
        ax.set_xlabel("fraction of tokens removed, in the method's order" if level == "token"
                      else "fraction of attention weights zeroed, in the method's order")
        ax.set_ylabel("mean P(originally predicted class)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.axhline(0.5, color="black", lw=0.6, ls=":")
        ax.set_title(_level_title(run, level))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle("Erasure curves: the faster a curve falls, the more faithful the ranking", fontsize=11)
    return _finish(fig, path, drawn)


def flip_boxplot(run: Mapping[str, Any], path: Path) -> bool:
    """Box plots of the fraction of items removed until the decision flips, per method (examples that never flip
    are left out; how many did flip is in the tick labels); one panel per erasure level."""
    made = _level_panels(run)
    if made is None:
        return False
    fig, panels = made
    drawn = False
    for ax, level in panels:
        data, labels, colors = [], [], []
        for m in _methods(run):
            recs = [(ex.get(f"erasure_{level}") or {}).get(m) for ex in run["examples"]]
            recs = [r for r in recs if r]
            if not recs:
                continue
            vals = finite_values(r["fraction_removed"] for r in recs)
            data.append(vals if vals.size else np.array([np.nan]))
            labels.append(f"{SHORT.get(m, m)}\n{vals.size}/{len(recs)} flip")
            colors.append(COLORS.get(m, "#333333"))
        if not data:
            ax.set_visible(False)
            continue
        bp = ax.boxplot([d[np.isfinite(d)] if np.isfinite(d).any() else [] for d in data], patch_artist=True,
                        widths=0.6, showmeans=True, meanprops=dict(marker="D", markerfacecolor="white",
                                                                   markeredgecolor="black", markersize=5))
        for patch, c in zip(bp["boxes"], colors):
            patch.set_facecolor(c)
            patch.set_alpha(0.55)
        for i, d in enumerate(data, start=1):
            if not np.isfinite(d).any():
                ax.text(i, 0.5, "never\nflips", ha="center", va="center", fontsize=8, color="#555555")
        ax.set_xticks(range(1, len(labels) + 1))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("fraction removed until the decision flips")
        ax.set_title(_level_title(run, level))
        ax.grid(axis="y", alpha=0.3)
        drawn = True
    fig.suptitle("Fraction removed until the decision flips (lower = more faithful; ◇ = mean)", fontsize=11)
    return _finish(fig, path, drawn)


def kendall_histograms(run: Mapping[str, Any], path: Path) -> bool:
    """Histograms of the per-example Kendall τ-b of each method against each reference (one panel per reference;
    dashed lines: means)."""
    refs = [r for r in ("loo", "gradient") if any(((ex.get("kendall") or {}).get(r)) for ex in run["examples"])]
    if not refs:
        return False
    fig, axes = _plt().subplots(1, len(refs), figsize=(6.2 * len(refs), 4.0), squeeze=False)
    bins = np.linspace(-1, 1, 21)
    drawn = False
    for ax, ref in zip(axes[0], refs):
        for m in _methods(run):
            if m == ref:
                continue
            vals = finite_values(((ex.get("kendall") or {}).get(ref, {}).get(m) or {}).get("tau") for ex in run["examples"])
            if not vals.size:
                continue
            c = COLORS.get(m)
            lw = 2.4 if m in ("attention", "rollout") else 1.4
            ax.hist(vals, bins=bins, histtype="step", lw=lw, color=c,
                    label=f"{LABELS.get(m, m)} (mean {vals.mean():.2f})")
            ax.axvline(vals.mean(), color=c, ls="--", lw=1)
            drawn = True
        ax.set_xlim(-1, 1)
        ax.set_xlabel(f"Kendall τ-b with {'leave-one-out' if ref == 'loo' else 'gradient'} importance (per example)")
        ax.set_ylabel("examples")
        ax.set_title(f"reference: {'leave-one-out' if ref == 'loo' else 'gradient × input'}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    return _finish(fig, path, drawn)


def _bin_index(v: float) -> int:
    for i in range(len(BINS) - 1):
        if v < BINS[i + 1]:
            return i
    return len(BINS) - 2


def _violin_by_bin(ax, values: Sequence[float], max_att: Sequence[float], classes: Sequence[int], ylabel: str) -> bool:
    classes_present = sorted(set(classes))
    split = 1 < len(classes_present) <= 4
    groups = classes_present if split else [None]
    width = 0.8 / len(groups)
    cmap = _plt().get_cmap("tab10")
    drawn = False
    for gi, cls in enumerate(groups):
        for b in range(len(BINS) - 1):
            vals = [v for v, a, c in zip(values, max_att, classes)
                    if _bin_index(a) == b and (cls is None or c == cls) and v is not None and math.isfinite(v)]
            x = b + (gi - (len(groups) - 1) / 2) * width
            color = cmap(gi + 3) if split else "#1f77b4"
            if len(vals) >= 2 and np.ptp(vals) > 0:
                parts = ax.violinplot([vals], positions=[x], widths=width * 0.9, showmedians=True)
                for body in parts["bodies"]:
                    body.set_facecolor(color)
                    body.set_alpha(0.5)
                for key in ("cmedians", "cmins", "cmaxes", "cbars"):
                    if key in parts:
                        parts[key].set_color(color)
                drawn = True
            if vals:
                ax.scatter([x] * len(vals), vals, s=6, color=color, alpha=0.5, zorder=3)
                ax.text(x, max(vals), f"n={len(vals)}", ha="center", va="bottom",
                        fontsize=7)
                drawn = True
    if split:
        for gi, cls in enumerate(groups):
            ax.scatter([], [], color=cmap(gi + 3), label=f"predicted class {cls}")
        ax.legend(fontsize=8, loc="upper left")
    ax.set_xticks(range(len(BINS) - 1))
    ax.set_xticklabels([f"[{BINS[i]:.2f}, {BINS[i + 1]:.2f}{']' if i == len(BINS) - 2 else ')'}"
                        for i in range(len(BINS) - 1)])
    ax.set_xlim(-0.6, len(BINS) - 1.4)
    ax.set_xlabel("maximum attention weight of the example")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    return drawn


def _violin_figure(run: Mapping[str, Any], key: str, value: str, ylabel: str):
    """``(fig, ax, drawn)``: :func:`_violin_by_bin` of ``ex[key][value]`` against ``ex[key]["max_attention"]`` over
    the examples that have both; None when none has."""
    rows = [(ex[key][value], ex[key]["max_attention"], ex["prediction"])
            for ex in run["examples"] if ex.get(key) and ex[key]["max_attention"] is not None]
    if not rows:
        return None
    fig, ax = _plt().subplots(figsize=(7.0, 4.2))
    drawn = _violin_by_bin(ax, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], ylabel)
    return fig, ax, drawn


def permutation_violin(run: Mapping[str, Any], path: Path) -> bool:
    """Jain & Wallace's Figure 3 as a plot of this run: per example, the median over permutations of the output
    TVD, against the example's maximum attention weight (binned), split by predicted class."""
    made = _violin_figure(run, "permutation", "median_tvd", "median ΔTVD of the output over permutations")
    if made is None:
        return False
    fig, ax, ok = made
    top = ax.get_ylim()[1]
    ax.set_ylim(-0.015 * top, top * 1.05)
    ax.set_title(f"Permuted attention (layer {run['config']['layer']}, {run['config']['permutations']} permutations "
                 "per example)", fontsize=10)
    return _finish(fig, path, ok)


def adversarial_violin(run: Mapping[str, Any], path: Path) -> bool:
    """Jain & Wallace's adversarial-attention violin: max JSD found (output TVD ≤ 0.05) against max attention."""
    made = _violin_figure(run, "adversarial", "jsd", "JSD(adversarial, original attention) [nats]")
    if made is None:
        return False
    fig, ax, ok = made
    ax.axhline(math.log(2), color="black", lw=0.6, ls=":")
    ax.set_ylim(0, 0.72)
    ax.set_title("Adversarial attention with output TVD ≤ 0.05 (dotted: ln 2, the maximum)", fontsize=10)
    return _finish(fig, path, ok)


def single_delta_js_histogram(run: Mapping[str, Any], path: Path) -> bool:
    """Histogram of Serrano & Smith's ΔJS = JS(output | top attention weight zeroed) − JS(output | random other
    weight zeroed), per example; positive values mean the top weight matters more than a random one."""
    vals = finite_values(ex["single"]["delta_js"] for ex in run["examples"] if ex.get("single") and ex["single"]["has_random"])
    if not vals.size:
        return False
    fig, ax = _plt().subplots(figsize=(6.4, 4.0))
    lo, hi = float(vals.min()), float(vals.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 1e-3, hi + 1e-3
    counts, _, _ = ax.hist(vals, bins=np.linspace(lo, hi, 31), color="#1f77b4", alpha=0.75, edgecolor="white")
    ax.axvline(0, color="black", lw=1)
    nonzero = counts[counts > 0]
    if nonzero.size > 1 and nonzero.max() > 10 * np.sort(nonzero)[-2]:
        ax.set_yscale("log")  # one bin dwarfs the rest: show the tail
        ax.set_ylabel("examples (log scale)")
    pos = float((vals > 0).mean())
    ax.set_xlabel("ΔJS = JS(top weight zeroed) − JS(random weight zeroed)  [nats]")
    if ax.get_yscale() != "log":
        ax.set_ylabel("examples")
    ax.set_title(f"Single attention weight removed (layer {run['config']['layer']}): ΔJS > 0 in {100 * pos:.0f}% of "
                 f"{vals.size} examples", fontsize=10)
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def _pick_examples(run: Mapping[str, Any], n: int) -> list[dict]:
    exs = [ex for ex in run["examples"] if ex.get("scores") and ex["n_tokens"] > 0]
    with_rationale = [ex for ex in exs if ex.get("rationale")]
    pool = with_rationale or exs
    # alternate predicted classes so the figure shows both decisions
    by_class: dict[int, list[dict]] = {}
    for ex in pool:
        by_class.setdefault(ex["prediction"], []).append(ex)
    out: list[dict] = []
    while len(out) < n and any(by_class.values()):
        for c in sorted(by_class):
            if by_class[c] and len(out) < n:
                out.append(by_class[c].pop(0))
    return out


def token_heatmap(run: Mapping[str, Any], method: str, path: Path, n_examples: int = 4, max_tokens: int = 24) -> bool:
    """A few examples with every token coloured by the method's score (divided by the example's largest
    |score|); planted rationale tokens, when known, are boxed."""
    exs = _pick_examples(run, n_examples)
    exs = [ex for ex in exs if method in ex["scores"]]
    if not exs:
        return False
    plt = _plt()
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    width = min(max_tokens, max(len(ex["tokens"]) for ex in exs))
    scores = [np.asarray([np.nan if v is None else v for v in ex["scores"][method][:width]]) for ex in exs]
    signed = any((s < -1e-12).any() for s in scores if s.size)
    cmap = plt.get_cmap("RdBu_r" if signed else "Reds")
    norm = Normalize(-1 if signed else 0, 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.78 * width + 1.5), 0.62 * len(exs) + 1.3))
    for r, (ex, s) in enumerate(zip(exs, scores)):
        scale = np.nanmax(np.abs(s)) if s.size and np.isfinite(s).any() else 1.0
        scale = scale if scale > 0 else 1.0
        gold = set(ex.get("rationale") or [])
        for t in range(min(width, len(ex["tokens"]))):
            v = s[t] / scale if np.isfinite(s[t]) else 0.0
            ax.add_patch(Rectangle((t, r), 1, 1, facecolor=cmap(norm(v)), edgecolor="white", lw=0.8))
            if t in gold:
                ax.add_patch(Rectangle((t + 0.04, r + 0.06), 0.92, 0.88, fill=False, edgecolor="black", lw=1.6))
            tok = str(ex["tokens"][t])
            tok = tok if len(tok) <= 9 else tok[:8] + "…"
            ax.text(t + 0.5, r + 0.5, tok, ha="center", va="center", fontsize=7,
                    color="white" if abs(v) > 0.65 else "black", fontweight="bold" if t in gold else "normal")
    ax.set_xlim(0, width)
    ax.set_ylim(len(exs), 0)
    ax.set_yticks([r + 0.5 for r in range(len(exs))])
    ax.set_yticklabels([f"#{ex['index']}  pred {ex['prediction']} (p={ex['probability']:.2f})" for ex in exs],
                       fontsize=8)
    ax.set_xticks([t + 0.5 for t in range(width)])
    ax.set_xticklabels([str(t) for t in range(width)], fontsize=6)
    ax.set_xlabel("token position (special tokens left out)" + ("; boxed: planted rationale" if any(
        ex.get("rationale") for ex in exs) else ""))
    ax.set_title(f"{LABELS.get(method, method)}: token scores / max |score| of the example", fontsize=10)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=norm)
    fig.colorbar(sm, ax=ax, fraction=0.025, pad=0.01, label="relative score")
    return _finish(fig, path)


# -------------------------------------------------------------------------------------------------------------


def make_figures(run: Mapping[str, Any], fig_dir: str | Path) -> dict[str, dict[str, str]]:
    """Write every figure the run has data for into ``fig_dir``; returns ``{key: {path, title, caption}}`` with
    paths relative to the run folder (``figures/…``)."""
    fig_dir = Path(fig_dir)
    rel = fig_dir.name
    out: dict[str, dict[str, str]] = {}

    def add(key: str, fn, title: str, caption: str, *args) -> None:
        path = fig_dir / f"{key}.png"
        if fn(run, *args, path) if args else fn(run, path):
            out[key] = {"path": f"{rel}/{key}.png", "title": title, "caption": caption}

    add("erasure_curves", erasure_curves, "Erasure curves",
        "Mean probability of the originally predicted class as tokens are deleted (left) or attention weights "
        "zeroed (right) in each method's order, against the fraction removed; bands: 95% interval of the mean "
        "(±1.96 standard errors). A faithful ranking makes the curve fall fast.")
    add("flip_fraction", flip_boxplot, "Fraction removed until the decision flips",
        "Per method, the fraction of tokens (or attention weights) removed in its order before the predicted class "
        "changes; examples that never flip are left out (their number is under each box).")
    add("kendall_tau", kendall_histograms, "Kendall τ with the reference importances",
        "Per-example Kendall τ-b between each method's scores and leave-one-out / gradient importance over the real "
        "tokens (Jain & Wallace 2019, §4.1); dashed lines: means.")
    add("permutation_violin", permutation_violin, "Permuted attention (Jain & Wallace Fig. 3)",
        "Median output change (TVD) over random permutations of the attention over the real tokens, against the "
        "example's largest attention weight; a faithful attention changes the output when permuted, above all where "
        "it is peaked.")
    add("adversarial_violin", adversarial_violin, "Adversarial attention (Jain & Wallace Fig. 6)",
        "Largest JS divergence from the original attention reached while keeping the output within TVD 0.05.")
    add("single_delta_js", single_delta_js_histogram, "Single attention weight removed (Serrano & Smith §4)",
        "ΔJS per example: output JS divergence when the top attention weight is zeroed minus when a random other "
        "weight is; mass right of 0 means the top weight matters more.")
    for m in _methods(run):
        add(f"heatmap_{m}", lambda r, p, m=m: token_heatmap(r, m, p), f"Token heat-map: {LABELS.get(m, m)}",
            f"A few examples coloured by the {LABELS.get(m, m)} score of each token (divided by the example's "
            "largest |score|); boxed tokens are the planted rationale when it is known.")
    return out
