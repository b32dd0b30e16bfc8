"""The report's figures, each a matplotlib Figure drawn from plain numbers (:func:`to_png` embeds it).

Rule for every figure: no legend sits on the data. Panels share one legend placed outside
them (above or below), or the panels are small multiples that need none.
"""

from __future__ import annotations

import io
import math
from typing import Mapping, Sequence

import numpy as np

#: One colour per forecast, the same in every figure.
COLOURS = {"model": "tab:blue", "model (calibrated)": "tab:purple", "persistence": "tab:orange",
           "climatology": "tab:gray"}


def colour(name: str) -> str:
    return COLOURS.get(name, "tab:green")


def to_png(fig, dpi: int = 110) -> bytes:
    """``fig`` rendered as PNG bytes (tight bounding box, so outside legends are kept)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _legend_entries(axes) -> tuple[list, list[str]]:
    """(handles, labels) of all panels' legend entries, each label once, in first-seen order."""
    handles: dict = {}
    for ax in np.ravel(axes):
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    return list(handles.values()), list(handles)


def _legend_below(fig, axes) -> None:
    """One legend for all panels, under them, with each label once."""
    handles, labels = _legend_entries(axes)
    if labels:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(len(labels), 4), fontsize=8, frameon=False)


def skill_figure(roc: Mapping[str, dict], reliability: Mapping[str, dict], thresholds: Mapping[str, dict],
                 points: Mapping[str, tuple[float, float]] | None = None,
                 marks: Mapping[str, float] | None = None, climatology: float | None = None,
                 levels: Mapping[str, float] | None = None):
    """ROC, reliability diagram and skill vs threshold side by side, one legend below them all.

    ``roc``: name -> ``{"pofd": [...], "pod": [...]}`` (probability of false detection and of
    detection, one point per threshold); ``points``: name -> (pofd, pod) of yes/no forecasts
    (persistence) drawn as markers. ``reliability``: name -> ``{"forecast": [...], "observed":
    [...], "count": [...]}`` per probability bin (mean forecast probability, observed
    frequency, instances; optional ``bin_low``), the counts drawn in a panel of their own
    under the diagram. ``thresholds``: name -> ``{"threshold": [...], "tss": [...], "hss":
    [...]}``; ``marks``: label -> threshold (or thresholds) drawn as vertical lines; ``levels``: label -> TSS
    of a yes/no forecast that has no threshold (persistence), drawn as horizontal lines;
    ``climatology``: the base rate drawn on the reliability diagram.
    """
    fig = _figure(12, 4.6)
    grid = fig.add_gridspec(2, 3, height_ratios=[4, 1], hspace=0.45, wspace=0.35)
    ax_roc = fig.add_subplot(grid[:, 0])
    ax_rel = fig.add_subplot(grid[0, 1])
    ax_cnt = fig.add_subplot(grid[1, 1], sharex=ax_rel)
    ax_thr = fig.add_subplot(grid[:, 2])

    ax_roc.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":", label="no skill")
    for name, c in roc.items():
        x, y = np.asarray(c["pofd"], float), np.asarray(c["pod"], float)
        keep = np.isfinite(x) & np.isfinite(y)
        order = np.lexsort((y[keep], x[keep]))
        ax_roc.plot(np.r_[0, x[keep][order], 1], np.r_[0, y[keep][order], 1], color=colour(name), lw=1.6, label=name)
    for name, (x, y) in (points or {}).items():
        ax_roc.plot([x], [y], marker="D", ms=7, ls="none", color=colour(name), label=f"{name} (yes/no)")
    ax_roc.set(xlim=(0, 1), ylim=(0, 1), xlabel="false alarm rate POFD = FP/(FP+TN)", ylabel="hit rate POD = TP/(TP+FN)",
               title="ROC")

    ax_rel.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":", label="perfect reliability")
    if climatology is not None and np.isfinite(climatology):
        ax_rel.axhline(climatology, color=colour("climatology"), lw=1, ls="--", label="climatology (base rate)")
    width = 0.1 / max(len(reliability), 1)
    for i, (name, c) in enumerate(reliability.items()):
        x = np.asarray(c["forecast"], float)
        y = np.asarray(c["observed"], float)
        n = np.asarray(c["count"], float)
        keep = np.isfinite(x) & np.isfinite(y) & (n > 0)
        ax_rel.plot(x[keep], y[keep], marker="o", ms=4, color=colour(name), lw=1.4, label=name)
        lo = np.asarray(c["bin_low"], float) if "bin_low" in c else np.arange(len(n)) / max(len(n), 1)
        ax_cnt.bar(lo + i * width, n, width=width, align="edge", color=colour(name))
    ax_rel.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed flare frequency", title="reliability")
    ax_rel.tick_params(labelbottom=False)
    ax_cnt.set_yscale("log")
    from matplotlib.ticker import LogLocator, NullFormatter

    ax_cnt.yaxis.set_major_locator(LogLocator(numticks=3))
    ax_cnt.yaxis.set_minor_formatter(NullFormatter())
    ax_cnt.set_xlabel("forecast probability (bin mean)")
    ax_cnt.set_ylabel("count", fontsize=8)
    ax_cnt.tick_params(labelsize=7)

    for name, c in thresholds.items():
        t = np.asarray(c["threshold"], float)
        ax_thr.plot(t, np.asarray(c["tss"], float), color=colour(name), lw=1.6, label=name)
        if "hss" in c:
            ax_thr.plot(t, np.asarray(c["hss"], float), color=colour(name), lw=1.2, ls="--")
    if thresholds:
        ax_thr.plot([], [], color="k", lw=1.6, label="TSS (solid)")
        ax_thr.plot([], [], color="k", lw=1.2, ls="--", label="HSS (dashed)")
    for label, value in (levels or {}).items():
        ax_thr.axhline(value, color=colour(label.split(" ")[0]), lw=1.2, ls=":", label=label)
    for i, (label, value) in enumerate((marks or {}).items()):
        for j, v in enumerate(np.atleast_1d(value)):
            ax_thr.axvline(v, color="k", lw=0.8, ls=[":", "-."][i % 2], label=label if j == 0 else None)
    ax_thr.axhline(0, color="k", lw=0.5)
    ax_thr.set(xlim=(0, 1), xlabel="probability threshold", ylabel="skill", title="skill vs threshold")
    for ax in (ax_roc, ax_rel, ax_cnt, ax_thr):
        ax.grid(alpha=0.3)
    _legend_below(fig, [ax_roc, ax_rel, ax_thr])
    return fig


def training_figure(runs: Sequence[dict], per_row: int = 4):
    """Small multiples, one column per training run: loss, skill and learning rate per epoch.

    ``runs``: ``{"name", "epoch": [...], "curves": {"loss" | "skill" | "lr": {label: [...]}},
    "selected": epoch or None}``. Labels are shared across runs (``train``, ``inner
    validation``, ``held-out fold``), so one legend above the panels names them all; the
    selected epoch is a vertical line.
    """
    from matplotlib.ticker import MaxNLocator

    rows_kinds = ("loss", "skill", "lr")
    n = max(len(runs), 1)
    cols = min(n, per_row)
    blocks = math.ceil(n / per_row)
    fig = _figure(3.0 * cols + 0.6, 2.0 * len(rows_kinds) * blocks + 0.4)
    axes = np.atleast_2d(fig.subplots(len(rows_kinds) * blocks, cols, squeeze=False))
    styles = {"train": ("tab:gray", "-"), "inner validation": ("tab:green", "-"), "held-out fold": ("tab:red", "-")}
    for i, run in enumerate(runs):
        block, col = divmod(i, per_row)
        x = np.asarray(run["epoch"], float)
        for r, kind in enumerate(rows_kinds):
            ax = axes[block * len(rows_kinds) + r, col]
            for label, values in run["curves"].get(kind, {}).items():
                c, ls = styles.get(label, ("tab:blue", "-"))
                ax.plot(x, np.asarray(values, float), color=c, ls=ls, marker="o", ms=2.5, lw=1.2, label=label)
            if run.get("selected") is not None:
                ax.axvline(run["selected"], color="k", lw=0.9, ls="--", label="selected epoch")
            if r == 0:
                ax.set_title(run["name"], fontsize=9)
            if col == 0:
                ax.set_ylabel({"loss": "loss", "skill": "TSS", "lr": "learning rate"}[kind], fontsize=8)
            if kind == "lr" and ax.lines:
                ax.set_yscale("log")
            if r == len(rows_kinds) - 1:
                ax.set_xlabel("epoch", fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    for j in range(len(runs), axes.shape[1] * blocks):
        block, col = divmod(j, per_row)
        for r in range(len(rows_kinds)):
            axes[block * len(rows_kinds) + r, col].set_visible(False)
    fig.tight_layout()
    handles, labels = _legend_entries(axes)
    if labels:
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                   ncol=len(labels), fontsize=8, frameon=False)
    return fig


def probability_figure(prob_nf: np.ndarray, prob_fl: np.ndarray, threshold: float):
    """Histogram of the forecast probabilities of non-flaring and flaring instances (legend below)."""
    fig = _figure(5.5, 3.0)
    ax = fig.subplots()
    bins = np.linspace(0, 1, 21)
    ax.hist(prob_nf, bins=bins, alpha=0.6, label="no flare >= M1.0 (NF)", color="tab:blue")
    ax.hist(prob_fl, bins=bins, alpha=0.6, label="flare >= M1.0 (FL)", color="tab:red")
    ax.axvline(threshold, color="k", lw=1, ls="--", label=f"threshold {threshold:g}")
    ax.set_xlabel("predicted flare probability")
    ax.set_ylabel("instances")
    ax.set_yscale("log")
    _legend_below(fig, [ax])
    fig.subplots_adjust(bottom=0.22)
    return fig
