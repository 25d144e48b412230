"""Figures of a study run (matplotlib, Agg backend, imported lazily: ``pip install 'attnfaith[plot]'``).

:func:`make_figures` draws every :class:`~attnfaith.study.registry.Figure` of the registered report parts, in their
order, and returns, per figure, its path (relative to the run folder), title and caption, which ``report.md`` shows.
What a figure draws is its registration's business (:mod:`attnfaith.study.builtin`); this module holds what they
share, so that every figure has one style:

* the figure life cycle: :func:`pyplot` (Agg, the house style :data:`STYLE`), :func:`finish` (PNG for the report,
  and SVG and PDF beside it for papers, written reproducibly);
* the methods' colours and labels (:func:`color`, :func:`short_label`, :func:`methods_of`);
* :func:`strip` (the points of a group, jittered), :func:`legend_outside` (a legend right of the axes or below
  them, never over the data); a group's ``n`` is written in its tick label, where nothing can cover it;
* the violin plot against the maximum attention weight (:func:`violin_by_max_attention`; groups of fewer than
  :data:`SPARSE` examples are drawn as points, with their ``n``), and the token heat-map of the methods' scores.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from attnfaith.study import registry

__all__ = ["make_figures", "pyplot", "finish", "methods_of", "color", "short_label", "strip", "legend_outside",
           "class_color", "violin_by_max_attention", "token_heatmap", "BINS", "SPARSE", "STYLE",
           "VECTOR_FORMATS"]

#: the bins of the maximum attention weight (Jain & Wallace's violin plots)
BINS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: a group of fewer examples is shown point by point (a box or violin of it alone would mislead)
SPARSE = 20
#: the smallest group a violin is drawn for (smaller ones: points only)
MIN_VIOLIN = 5
#: the vector formats written beside every PNG
VECTOR_FORMATS = ("svg", "pdf")
#: the house style (matplotlib rcParams), applied by :func:`pyplot`
STYLE = {
    "figure.dpi": 110, "savefig.dpi": 110, "figure.constrained_layout.use": True, "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8, "legend.title_fontsize": 8,
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "svg.fonttype": "none", "svg.hashsalt": "attnfaith", "pdf.fonttype": 42,
}
#: the colours of the predicted classes (violins, Kendall τ boxes)
_CLASS_COLORS = ("#d62728", "#9467bd", "#8c564b", "#e377c2")


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, with :data:`STYLE` applied."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    return plt


def finish(fig, path: Path, drawn: bool = True, vector: bool = True) -> bool:
    """Write ``fig`` to ``path`` (PNG) and, with ``vector``, beside it as ``.svg`` and ``.pdf``
    (:data:`VECTOR_FORMATS`; no creation date, so a redraw writes the same bytes) if anything was drawn, else close
    it unsaved; returns ``drawn``. The bounding box is tight (legends outside the axes included)."""
    if drawn:
        path.parent.mkdir(parents=True, exist_ok=True)
        # lay out once (constrained layout), then write every format with that layout and bounding box
        fig.canvas.draw()
        bbox = fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.05)
        fig.set_layout_engine("none")
        fig.savefig(path, bbox_inches=bbox)
        if vector:
            fig.savefig(path.with_suffix(".svg"), bbox_inches=bbox, metadata={"Date": None})
            fig.savefig(path.with_suffix(".pdf"), bbox_inches=bbox, metadata={"CreationDate": None})
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


def class_color(i: int) -> str:
    """The colour of the ``i``-th predicted class shown (cycling)."""
    return _CLASS_COLORS[i % len(_CLASS_COLORS)]


def strip(ax, x: float, values: Sequence[float], color: str | None, width: float = 0.5, seed: int = 0,
          size: float = 9, alpha: float = 0.6, vertical: bool = True) -> None:
    """The ``values`` as points around ``x`` (jittered uniformly over ``±width/2``, the jitter drawn from
    ``default_rng(seed)`` so a redraw is identical); horizontal positions and vertical values with ``vertical``."""
    vals = np.asarray(values, dtype=np.float64)
    if not vals.size:
        return
    jitter = np.random.default_rng(seed).uniform(-width / 2, width / 2, vals.size)
    xy = (x + jitter, vals) if vertical else (vals, x + jitter)
    ax.scatter(*xy, s=size, color=color, alpha=alpha, linewidths=0, zorder=3)


def legend_outside(ax_or_fig, handles=None, labels=None, title: str | None = None, where: str = "right", ncol=None):
    """A legend outside the axes (or the figure): ``where="right"`` (beside, top aligned) or ``"below"`` (centred
    under them, in ``ncol`` columns, default all in one row); never over the data. Returns the legend."""
    if handles is None:
        handles, labels = ax_or_fig.get_legend_handles_labels()
    if not handles:
        return None
    if where == "right":
        kw = dict(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        kw = dict(loc="upper center", bbox_to_anchor=(0.5, -0.16 if hasattr(ax_or_fig, "transAxes") else 0.0),
                  ncol=ncol or len(handles))
    return ax_or_fig.legend(handles, labels, title=title, frameon=False, **kw)


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
    drawn = False
    counts = [[0] * len(groups) for _ in range(len(BINS) - 1)]
    for gi, cls in enumerate(groups):
        c = class_color(gi) if split else "#1f77b4"
        for b in range(len(BINS) - 1):
            vals = [v for v, a, c_ in zip(values, max_att, classes)
                    if _bin_index(a) == b and (cls is None or c_ == cls) and v is not None and math.isfinite(v)]
            if not vals:
                continue
            x = b + (gi - (len(groups) - 1) / 2) * width
            if len(vals) >= MIN_VIOLIN and np.ptp(vals) > 0:
                parts = ax.violinplot([vals], positions=[x], widths=width * 0.9, showmedians=True, showextrema=False)
                for body in parts["bodies"]:
                    body.set_facecolor(c)
                    body.set_edgecolor(c)
                    body.set_alpha(0.45)
                parts["cmedians"].set_color(c)
            # the points themselves: every one in a sparse group, as a light strip in a dense one
            strip(ax, x, vals, c, width=width * (0.5 if len(vals) < SPARSE else 0.3), seed=b * 8 + gi,
                  size=14 if len(vals) < SPARSE else 5, alpha=0.85 if len(vals) < SPARSE else 0.35)
            counts[b][gi] = len(vals)
            drawn = True
    if split:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", ls="", color=class_color(gi)) for gi in range(len(groups))]
        legend_outside(ax, handles, [str(cls) for cls in groups], title="predicted class")
    ax.set_xticks(range(len(BINS) - 1))
    ax.set_xticklabels([f"[{BINS[i]:.2f}, {BINS[i + 1]:.2f}{']' if i == len(BINS) - 2 else ')'}\n"
                        f"n = {' / '.join(map(str, counts[i]))}" for i in range(len(BINS) - 1)])
    ax.set_xlim(-0.6, len(BINS) - 1.4)
    ax.set_xlabel("maximum attention weight of the example" + (" (n per predicted class, in the legend's order)"
                                                               if split else ""))
    ax.set_ylabel(ylabel)
    ax.grid(axis="x", visible=False)
    return drawn


def violin_by_max_attention(run: Mapping[str, Any], record: str, value: str, max_attention: str, ylabel: str):
    """``(fig, ax, drawn)``: violins of ``example[record][value]`` per bin (:data:`BINS`) of the example's maximum
    attention weight ``example[record][max_attention]``, split by predicted class (2 to 4 classes), over the
    examples that have both; None when none has. Every example is also a point; a group of fewer than
    :data:`MIN_VIOLIN` gets no violin, and one of fewer than :data:`SPARSE` larger points. Each bin's tick label
    says its ``n`` (per class, in the legend's order); the class legend is right of the axes."""
    rows = [(ex[record][value], ex[record][max_attention], ex["prediction"])
            for ex in run["examples"] if ex.get(record) and ex[record][max_attention] is not None]
    if not rows:
        return None
    fig, ax = pyplot().subplots(figsize=(7.0, 4.0))
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
    ax.grid(False)
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
    paths relative to the run folder (``figures/…``; ``vector``: the same figure as SVG and PDF), in the order of
    the report parts."""
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
                                "caption": fig.caption.replace("{label}", label),
                                "vector": [f"{fig_dir.name}/{key}.{ext}" for ext in VECTOR_FORMATS]}
    return out
