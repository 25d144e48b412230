"""Figures of a study run (matplotlib, Agg backend, imported lazily: ``pip install 'attnfaith[plot]'``).

:func:`make_figures` draws every :class:`~attnfaith.study.registry.Figure` of the registered report parts, in their
order, and returns, per figure, its path (relative to the run folder), title and caption, which ``report.md`` shows.
What a figure draws is its registration's business (:mod:`attnfaith.study.builtin`); this module holds what they
share: the figure life cycle (:func:`pyplot`, :func:`finish`), the methods' colours and labels, the violin plot
against the maximum attention weight, and the token heat-map of the methods' scores.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from attnfaith.study import registry

__all__ = ["make_figures", "pyplot", "finish", "methods_of", "color", "short_label", "violin_by_max_attention",
           "token_heatmap", "BINS"]

#: the bins of the maximum attention weight (Jain & Wallace's violin plots)
BINS = (0.0, 0.25, 0.5, 0.75, 1.0)


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def finish(fig, path: Path, drawn: bool = True) -> bool:
    """Lay ``fig`` out and write it to ``path`` (110 dpi) if anything was drawn, else close it unsaved; returns
    ``drawn``."""
    fig.tight_layout()
    if drawn:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return drawn


def methods_of(run: Mapping[str, Any]) -> list[str]:
    """The run's methods that ran (configured, not skipped)."""
    skipped = run.get("skipped", {})
    return [m for m in run["config"]["methods"] if m not in skipped]


def color(method: str) -> str | None:
    """The method's colour (None: matplotlib's next)."""
    try:
        return registry.method_spec(method).color
    except KeyError:
        return None


def short_label(method: str) -> str:
    """The method's short name (tick labels)."""
    try:
        return registry.method_spec(method).short
    except KeyError:
        return method


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
    cmap = pyplot().get_cmap("tab10")
    drawn = False
    for gi, cls in enumerate(groups):
        for b in range(len(BINS) - 1):
            vals = [v for v, a, c in zip(values, max_att, classes)
                    if _bin_index(a) == b and (cls is None or c == cls) and v is not None and math.isfinite(v)]
            x = b + (gi - (len(groups) - 1) / 2) * width
            c = cmap(gi + 3) if split else "#1f77b4"
            if len(vals) >= 2 and np.ptp(vals) > 0:
                parts = ax.violinplot([vals], positions=[x], widths=width * 0.9, showmedians=True)
                for body in parts["bodies"]:
                    body.set_facecolor(c)
                    body.set_alpha(0.5)
                for key in ("cmedians", "cmins", "cmaxes", "cbars"):
                    if key in parts:
                        parts[key].set_color(c)
                drawn = True
            if vals:
                ax.scatter([x] * len(vals), vals, s=6, color=c, alpha=0.5, zorder=3)
                ax.text(x, max(vals), f"n={len(vals)}", ha="center", va="bottom", fontsize=7)
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


def violin_by_max_attention(run: Mapping[str, Any], record: str, value: str, max_attention: str, ylabel: str):
    """``(fig, ax, drawn)``: violins of ``example[record][value]`` per bin (:data:`BINS`) of the example's maximum
    attention weight ``example[record][max_attention]``, split by predicted class (2 to 4 classes), over the
    examples that have both; None when none has."""
    rows = [(ex[record][value], ex[record][max_attention], ex["prediction"])
            for ex in run["examples"] if ex.get(record) and ex[record][max_attention] is not None]
    if not rows:
        return None
    fig, ax = pyplot().subplots(figsize=(7.0, 4.2))
    drawn = _violin_by_bin(ax, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], ylabel)
    return fig, ax, drawn


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
    plt = pyplot()
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
    ax.set_title(f"{registry.method_label(method)}: token scores / max |score| of the example", fontsize=10)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=norm)
    fig.colorbar(sm, ax=ax, fraction=0.025, pad=0.01, label="relative score")
    return finish(fig, path)


def make_figures(run: Mapping[str, Any], fig_dir: str | Path) -> dict[str, dict[str, str]]:
    """Write every figure the run has data for into ``fig_dir``; returns ``{key: {path, title, caption}}`` with
    paths relative to the run folder (``figures/…``), in the order of the report parts."""
    fig_dir = Path(fig_dir)
    out: dict[str, dict[str, str]] = {}
    for part in registry.report_parts():
        for fig in part.figures:
            for method in (methods_of(run) if fig.per_method else [None]):
                key = fig.key if method is None else fig.key.replace(registry.METHOD, method)
                path = fig_dir / f"{key}.png"
                drawn = fig.draw(run, path) if method is None else fig.draw(run, method, path)
                if drawn:
                    label = "" if method is None else registry.method_label(method)
                    out[key] = {"path": f"{fig_dir.name}/{key}.png", "title": fig.title.replace("{label}", label),
                                "caption": fig.caption.replace("{label}", label)}
    return out
