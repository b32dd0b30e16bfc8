"""Figures of attribution maps: overlays on the magnetogram and comparison grids.

Kept apart from the algorithms (as captum keeps ``captum.attr.visualization`` apart):
nothing here computes an attribution. Figures are made with matplotlib's object API on
the Agg canvas (no pyplot state, no display needed) and written atomically.

An overlay shows the magnetogram in gray (black -250 G, white +250 G) with the signed map
blended on top: red = evidence for a flare, blue = against, opacity growing with the
magnitude; the colour scale is symmetric at the 99.5th percentile of |attribution| on
the disk so one hot pixel does not wash the rest out. The flare's position is marked
with a green +, the localisation neighbourhood outlined in green and, on
simulated images, the ground-truth region drawn as a dashed cyan circle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np


def method_title(method: str) -> str:
    """The method's human name from the registry (imported lazily: figures need no torch)."""
    from flarelens.explain.methods import method_title as title

    return title(method)


@dataclass
class Panel:
    """What one row of a comparison (or one overlay) shows for an instance."""

    image: np.ndarray  # (H, W) uint8 magnetogram as the model saw it
    maps: dict[str, np.ndarray]  # method -> (H, W) attribution
    title: str = ""
    flare_xy: tuple[float, float] | None = None  # pixel (x = column, y = row) of the flare at the image time
    region: np.ndarray | None = None  # (H, W) bool localisation region
    truth: tuple[float, float, float] | None = None  # ground-truth (x, y, radius_px) on simulated images
    disk: np.ndarray | None = None  # (H, W) bool on-disk pixels for the colour scale
    labels: dict[str, str] = field(default_factory=dict)  # method -> extra text under the title


def _scale(attr: np.ndarray, disk: np.ndarray | None) -> float:
    values = np.abs(attr[disk]) if disk is not None and disk.any() else np.abs(attr).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 1.0
    v = float(np.percentile(values, 99.5))
    if v <= 0:
        v = float(values.max())
    return v if v > 0 else 1.0


def draw_magnetogram(ax, image: np.ndarray) -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_overlay(ax, image: np.ndarray, attr: np.ndarray, disk: np.ndarray | None = None):
    """Blend the signed ``attr`` on the magnetogram on ``ax``; return the colour mapping."""
    import matplotlib
    from matplotlib import cm, colors

    draw_magnetogram(ax, image)
    v = _scale(attr, disk)
    norm = colors.Normalize(vmin=-v, vmax=v)
    cmap = matplotlib.colormaps["RdBu_r"]
    rgba = cmap(norm(np.nan_to_num(attr)))
    rgba[..., 3] = 0.9 * np.clip(np.abs(np.nan_to_num(attr)) / v, 0, 1) ** 0.6
    ax.imshow(rgba, interpolation="nearest")
    return cm.ScalarMappable(norm=norm, cmap=cmap)


def draw_marks(ax, flare_xy=None, region=None, truth=None) -> None:
    """The flare position (+), its localisation region (outline) and the ground truth (dashed)."""
    from matplotlib.patches import Circle

    if region is not None and region.any():
        ax.contour(region.astype(float), levels=[0.5], colors="lime", linewidths=0.8)
    if truth is not None and np.all(np.isfinite(truth)):
        x, y, r = truth
        ax.add_patch(Circle((x, y), r, fill=False, edgecolor="cyan", linestyle="--", linewidth=0.9))
    if flare_xy is not None and np.all(np.isfinite(flare_xy)):
        ax.plot([flare_xy[0]], [flare_xy[1]], marker="+", color="lime", markersize=10, markeredgewidth=1.5)


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def overlay_figure(panel: Panel, method: str):
    """One method's map blended on the magnetogram, with a colour bar and the flare marked."""
    fig = _new_figure(5.2, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    mappable = draw_overlay(ax, panel.image, panel.maps[method], panel.disk)
    draw_marks(ax, panel.flare_xy, panel.region, panel.truth)
    title = f"{method_title(method)}\n{panel.title}"
    if panel.labels.get(method):
        title += f"\n{panel.labels[method]}"
    ax.set_title(title, fontsize=8)
    bar = fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("attribution to the flare class", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    fig.tight_layout()
    return fig


def comparison_figure(panels: list[Panel], methods) -> object:
    """Rows = instances, columns = the magnetogram and each method's overlay."""
    cols = 1 + len(methods)
    fig = _new_figure(2.4 * cols, 2.5 * max(len(panels), 1))
    for r, panel in enumerate(panels):
        ax = fig.add_subplot(len(panels), cols, r * cols + 1)
        draw_magnetogram(ax, panel.image)
        draw_marks(ax, panel.flare_xy, panel.region, panel.truth)
        ax.set_ylabel(panel.title, fontsize=6)
        if r == 0:
            ax.set_title("magnetogram", fontsize=8)
        for c, method in enumerate(methods):
            ax = fig.add_subplot(len(panels), cols, r * cols + c + 2)
            draw_overlay(ax, panel.image, panel.maps[method], panel.disk)
            draw_marks(ax, panel.flare_xy, panel.region, panel.truth)
            if r == 0:
                ax.set_title(method_title(method), fontsize=8)
            if panel.labels.get(method):
                ax.set_xlabel(panel.labels[method], fontsize=6)
    fig.tight_layout()
    return fig


def map_panel(z: dict, row, methods, region: np.ndarray | None = None, notes=(), extra=None) -> Panel:
    """The :class:`Panel` of one stored map file ``z`` (its arrays) for a scores row ``row``:
    ``region`` is the neighbourhood drawn, ``notes`` words added to the title (e.g.
    "TRAINING DATA")."""
    truth = tuple(z["truth_xyr"]) if np.all(np.isfinite(z["truth_xyr"])) else None
    prob = float(z["model_prob"])
    cls = row["goes_class"] or "no flare"
    title = f"{row['time']:%Y-%m-%d %H:%M} {cls} p={prob:.2f} {row['outcome']}"
    if notes:
        title += " | " + ", ".join(notes)
    return Panel(
        image=z["image"], maps={m: z[f"map_{m}"] for m in methods}, title=title,
        flare_xy=tuple(z["flare_xy"]) if np.all(np.isfinite(z["flare_xy"])) else None,
        region=region if region is not None and region.any() else None, truth=truth, disk=z["disk"],
        labels=extra or {},
    )


def save_figure(fig, path: str | os.PathLike) -> None:
    """Write ``fig`` as PNG atomically."""
    from flarelens.fileio import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
