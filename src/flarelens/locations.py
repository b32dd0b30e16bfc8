"""Where on the disk the X- and M-class flares lie that a model caught or missed.

For the instances (images) whose largest flare in the window is X or M class: hits
(``flare_prob >= threshold``, TP) and misses (FN), split into central (|lon| <= 70°) and
near-limb (|lon| > 70°) flares by the catalogue longitude, as in the study; per
longitude-latitude cell for the recall map. Counts are per instance, as in the study: a
flare forecast from 24 hourly images counts 24 times.

Near-limb counts are split further by whether the flare's source was on the visible disk
when the image was taken (:func:`flarelens.geometry.visible`: the position at the flare's
start rotated back to the image time). The label looks up to 24 h ahead and a region turns
about 13° a day, so a flare at E88 may have sat behind the east limb at the image time; a
hit on such a source was predicted from something else on the disk.

Reads our predictions.csv (``fl_lon``, ``fl_lat``, ``fl_start``) and the study's per-class
files (``fl_location``, ``flare_start``, the image path in ``timestamp``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from flarelens import geometry, metrics
from flarelens.errors import FlareLensError
from flarelens.fileio import atomic_path, ensure_dir, write_csv, write_text
from flarelens.metrics import check_threshold
from flarelens.predictions import STUDY, as_frames

logger = logging.getLogger(__name__)

#: Flare classes of the location analysis, largest first.
LOCATION_CLASSES = ("X", "M")

#: A flare is central when |longitude| <= LIMB_LONGITUDE degrees (docs/design.md), near-limb beyond.
LIMB_LONGITUDE = 70.0

#: Recall-map cell size in degrees of longitude and latitude.
CELL_DEG = 5.0

#: Columns of :func:`flare_instances`.
INSTANCE_COLUMNS = ["flare_class", "goes_class", "flare_prob", "fl_lon", "fl_lat", "timestamp", "time", "fl_start", "path"]

#: Near-limb parts of a :func:`location_analysis` class entry, each ``{"tp", "fn"}``:
#: by visibility of the source at the image time, then also by limb side (east: lon < 0).
LIMB_SPLIT_KEYS = (
    "limb_visible", "limb_hidden",
    "limb_east_visible", "limb_east_hidden", "limb_west_visible", "limb_west_hidden",
)


def _start_times(frame: pd.DataFrame) -> pd.Series:
    """UTC flare start times of a normalised table (``fl_start``: ours, or the study's
    ``flare_start``); NaT where unknown."""
    if "fl_start" not in frame:
        return pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    return pd.to_datetime(frame["fl_start"].astype(str).str.strip(), errors="coerce", utc=True, format="mixed")


def flare_instances(predictions, classes: Sequence[str] = LOCATION_CLASSES) -> pd.DataFrame:
    """The instances whose largest flare is of one of ``classes`` (GOES letters).

    ``predictions``: a normalised table, a prediction file, or a sequence of either (they
    are concatenated). Returns :data:`INSTANCE_COLUMNS`: ``flare_class`` (the letter),
    ``goes_class``, ``flare_prob``, ``fl_lon``, ``fl_lat`` (degrees, NaN when unknown),
    ``timestamp``, ``time`` (image time, UTC, NaT when unknown), ``fl_start`` (flare start,
    UTC, NaT when unknown), ``path``. Raises :class:`FlareLensError` for a table without
    flare classes (the study's fold files).
    """
    classes = tuple(c.upper() for c in classes)
    parts = []
    for frame in as_frames(predictions):
        if frame.attrs.get("format") == STUDY or "goes_class" not in frame:
            raise FlareLensError(
                f"{frame.attrs.get('path', 'predictions')}: has no flare classes or positions (study fold file); "
                "the location analysis needs our predictions.csv or the study's per-class files (x_class.csv, m_class.csv)"
            )
        letter = frame["goes_class"].astype(str).str[:1]
        keep = letter.isin(classes)
        sel = frame.loc[keep, ["goes_class", "flare_prob", "fl_lon", "fl_lat", "timestamp"]].copy()
        sel.insert(0, "flare_class", letter[sel.index])
        times = frame["time"] if "time" in frame else pd.Series(pd.NaT, index=frame.index)
        sel["time"] = pd.to_datetime(times[keep], utc=True)
        sel["fl_start"] = _start_times(frame.loc[keep])
        sel["path"] = frame.attrs.get("path", "")
        parts.append(sel)
    if not parts:
        return pd.DataFrame(columns=INSTANCE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[INSTANCE_COLUMNS]


def source_visible(instances: pd.DataFrame) -> np.ndarray:
    """Whether each instance's flare source was on the visible disk at the image time.

    :func:`flarelens.geometry.visible` of ``fl_lon``, ``fl_lat`` at ``fl_start`` seen at
    ``time``; without a flare start the position is taken as at the image time. Without an
    image time (a prediction file whose timestamps are not times) the position is taken as
    seen from far away with the solar equator face-on (cos lat · cos lon > 0). False where
    the position is unknown. Bool array, one per row.
    """
    lon = instances["fl_lon"].to_numpy(dtype=float)
    lat = instances["fl_lat"].to_numpy(dtype=float)
    image = pd.DatetimeIndex(instances["time"])
    start = pd.DatetimeIndex(instances["fl_start"])
    timed = ~np.asarray(image.isna())
    seen = np.cos(np.radians(lat)) * np.cos(np.radians(lon)) > 0
    if timed.any():
        seen[timed] = geometry.visible(lon[timed], lat[timed], start[timed], image[timed])
    if (~timed).any():
        logger.warning("%d flare instance(s) have no image time; their visibility is judged from the position alone",
                       int((~timed).sum()))
    return seen & np.isfinite(lon) & np.isfinite(lat)


def _tp_fn(mask: np.ndarray, hit: np.ndarray) -> dict:
    return {"tp": int(np.sum(mask & hit)), "fn": int(np.sum(mask & ~hit))}


def location_analysis(
    predictions,
    threshold: float = metrics.THRESHOLD,
    classes: Sequence[str] = LOCATION_CLASSES,
    limb: float = LIMB_LONGITUDE,
) -> dict:
    """Hits and misses of X- and M-class flare instances, central vs near-limb.

    For each class, among the instances whose largest flare is of that class: TP
    (``flare_prob >= threshold``) and FN (below) for central flares (|lon| <= ``limb``,
    70° by default, boundary included) and near-limb flares (|lon| > ``limb``); instances
    whose position is unknown (no longitude or latitude) are counted apart. The near-limb
    ones are split by :func:`source_visible` (``limb_visible``, ``limb_hidden``) and, in
    addition, by side (east: lon < 0, west: lon > 0). Returns::

        {"X": {"central": {"tp", "fn"}, "limb": {"tp", "fn"}, "unknown": n,
               "limb_visible": {"tp", "fn"}, "limb_hidden": {"tp", "fn"},
               "limb_east_visible": ..., "limb_east_hidden": ...,
               "limb_west_visible": ..., "limb_west_hidden": ...},
         "M": {...}}

    ``limb_visible + limb_hidden == limb`` and the four side keys add up to ``limb``.
    """
    threshold = check_threshold(threshold)
    inst = flare_instances(predictions, classes)
    hit = inst["flare_prob"].to_numpy(dtype=float) >= threshold
    lon = inst["fl_lon"].to_numpy(dtype=float)
    known = np.isfinite(lon) & np.isfinite(inst["fl_lat"].to_numpy(dtype=float))
    central = known & (np.abs(np.where(known, lon, 0.0)) <= limb)
    near_limb = known & ~central
    seen = np.zeros(len(inst), dtype=bool)
    if near_limb.any():
        seen[near_limb] = source_visible(inst[near_limb])
    east = near_limb & (np.where(known, lon, 0.0) < 0)
    west = near_limb & ~east
    result = {}
    for cls in (c.upper() for c in classes):
        of = inst["flare_class"].to_numpy() == cls
        result[cls] = {
            "central": _tp_fn(of & central, hit),
            "limb": _tp_fn(of & near_limb, hit),
            "unknown": int(np.sum(of & ~known)),
            "limb_visible": _tp_fn(of & near_limb & seen, hit),
            "limb_hidden": _tp_fn(of & near_limb & ~seen, hit),
            "limb_east_visible": _tp_fn(of & east & seen, hit),
            "limb_east_hidden": _tp_fn(of & east & ~seen, hit),
            "limb_west_visible": _tp_fn(of & west & seen, hit),
            "limb_west_hidden": _tp_fn(of & west & ~seen, hit),
        }
    return result


def _recall(tp: int, fn: int, width: int) -> str:
    return f"{tp / (tp + fn):>{width}.4f}" if tp + fn else f"{'-':>{width}}"


def format_locations(result: dict, limb: float = LIMB_LONGITUDE) -> str:
    """The tables ``flarelens locations`` prints for a :func:`location_analysis` result.

    First the study's table (TP, FN, recall for central and near-limb flares per class),
    then the near-limb instances split by whether the source was visible at the image time,
    east and west limb apart.
    """
    lines = [f"{'class':<6}{'region':<22}{'TP':>8}{'FN':>8}{'recall':>9}"]
    lines.append("-" * len(lines[0]))
    for cls, parts in result.items():
        for region, label in (("central", f"central |lon|<={limb:g}°"), ("limb", f"limb |lon|>{limb:g}°")):
            tp, fn = parts[region]["tp"], parts[region]["fn"]
            lines.append(f"{cls:<6}{label:<22}{tp:>8}{fn:>8}{_recall(tp, fn, 9)}")
        lines.append(f"{cls:<6}{'position unknown':<22}{parts['unknown']:>8} instance(s)")
    if not all(key in parts for parts in result.values() for key in LIMB_SPLIT_KEYS):
        return "\n".join(lines)
    lines += [
        "",
        f"near-limb (|lon|>{limb:g}°) instances: was the flare's source on the visible disk at the image time?",
        "(hidden: behind the limb then; a hit on it was predicted from something else on the disk)",
    ]
    head = f"{'class':<6}{'limb':<6}{'visible TP':>11}{'FN':>6}{'recall':>8}{'hidden TP':>11}{'FN':>6}{'recall':>8}"
    lines += [head, "-" * len(head)]
    for cls, parts in result.items():
        for side, prefix in (("east", "limb_east"), ("west", "limb_west"), ("both", "limb")):
            vis, hid = parts[f"{prefix}_visible"], parts[f"{prefix}_hidden"]
            lines.append(
                f"{cls:<6}{side:<6}{vis['tp']:>11}{vis['fn']:>6}{_recall(vis['tp'], vis['fn'], 8)}"
                f"{hid['tp']:>11}{hid['fn']:>6}{_recall(hid['tp'], hid['fn'], 8)}"
            )
    return "\n".join(lines)


def check_cell(cell: float) -> float:
    """A recall-map cell size in degrees: finite, positive and at most 90°."""
    cell = float(cell)
    if not (np.isfinite(cell) and 0 < cell <= 90):
        raise FlareLensError(f"recall-map cell must be between 0 and 90 degrees, got {cell:g}")
    return cell


def cell_index(degrees, cell: float = CELL_DEG) -> np.ndarray:
    """Grid cell of each angle: cell k covers [k·cell, (k+1)·cell] degrees.

    A value on a cell boundary goes to the cell nearer 0°, so that with 5° cells +-70°
    falls in the central cells (65-70 and -70--65), as the central/limb split says, and
    0° in the cell 0-5. NaN gives a NaN index.
    """
    v = np.asarray(degrees, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(v >= 0, np.maximum(np.ceil(v / cell) - 1, 0), -np.ceil(-v / cell))


def recall_cells(
    predictions,
    threshold: float = metrics.THRESHOLD,
    classes: Sequence[str] = LOCATION_CLASSES,
    cell: float = CELL_DEG,
) -> pd.DataFrame:
    """Hits and misses per ``cell``° × ``cell``° longitude-latitude cell (cells with flares only).

    Columns ``lon_min, lon_max, lat_min, lat_max`` (degrees), ``tp``, ``fn``, ``recall``
    (TP/(TP+FN)), ``no_hit`` (flares but no correct forecast), sorted by latitude then
    longitude. Instances of unknown position are left out. Cell boundaries: see
    :func:`cell_index`.
    """
    threshold = check_threshold(threshold)
    if not cell > 0:
        raise FlareLensError(f"cell size must be positive degrees, got {cell!r}")
    inst = flare_instances(predictions, classes)
    lon = inst["fl_lon"].to_numpy(dtype=float)
    lat = inst["fl_lat"].to_numpy(dtype=float)
    known = np.isfinite(lon) & np.isfinite(lat)
    table = pd.DataFrame({
        "i": cell_index(lon[known], cell).astype(int),
        "j": cell_index(lat[known], cell).astype(int),
        "hit": inst["flare_prob"].to_numpy(dtype=float)[known] >= threshold,
    })
    grouped = table.groupby(["j", "i"])["hit"].agg(tp="sum", n="size").reset_index()
    out = pd.DataFrame({
        "lon_min": grouped["i"] * cell, "lon_max": (grouped["i"] + 1) * cell,
        "lat_min": grouped["j"] * cell, "lat_max": (grouped["j"] + 1) * cell,
        "tp": grouped["tp"].astype(int), "fn": (grouped["n"] - grouped["tp"]).astype(int),
    })
    out["recall"] = out["tp"] / (out["tp"] + out["fn"])
    out["no_hit"] = out["tp"] == 0
    return out.astype({"lon_min": float, "lon_max": float, "lat_min": float, "lat_max": float}).reset_index(drop=True)


def recall_map(
    predictions,
    threshold: float = metrics.THRESHOLD,
    out_png: str | os.PathLike = "recall_map.png",
    classes: Sequence[str] = LOCATION_CLASSES,
    cell: float = CELL_DEG,
    limb: float = LIMB_LONGITUDE,
    title: str | None = None,
) -> Path:
    """Draw the recall of flare instances per longitude-latitude cell and save it as PNG.

    Colour: TP/(TP+FN) of the instances whose largest flare lies in the cell (blank where
    none); a red star marks cells with flares but no correct forecast; dashed lines mark
    the central/limb boundary at ±``limb``°. Axes: Stonyhurst longitude from -90° to 90°
    and latitude from -40° to 40° at least, widened to hold every flare. Written
    atomically; returns the path.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    frames = as_frames(predictions)
    cells = recall_cells(frames, threshold, classes, cell)
    inst = flare_instances(frames, classes)
    n_unknown = int((~(np.isfinite(inst["fl_lon"].to_numpy(dtype=float))
                       & np.isfinite(inst["fl_lat"].to_numpy(dtype=float)))).sum())
    i = np.rint(cells["lon_min"].to_numpy() / cell).astype(int)
    j = np.rint(cells["lat_min"].to_numpy() / cell).astype(int)
    i0 = min([int(math.floor(-90 / cell))] + list(i))
    i1 = max([int(math.ceil(90 / cell))] + list(i + 1))
    j0 = min([int(math.floor(-40 / cell))] + list(j))
    j1 = max([int(math.ceil(40 / cell))] + list(j + 1))
    grid = np.full((j1 - j0, i1 - i0), np.nan)
    grid[j - j0, i - i0] = cells["recall"].to_numpy(dtype=float)
    lon_edges = np.arange(i0, i1 + 1) * cell
    lat_edges = np.arange(j0, j1 + 1) * cell

    fig = Figure(figsize=(11, 5.2), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(lon_edges, lat_edges, np.ma.masked_invalid(grid), cmap="Blues", vmin=0, vmax=1,
                         edgecolors="#dddddd", linewidth=0.3)
    fig.colorbar(mesh, ax=ax, label="recall TP/(TP+FN)", shrink=0.9, pad=0.01)
    miss = cells[cells["no_hit"]]
    ax.scatter((miss["lon_min"] + miss["lon_max"]) / 2, (miss["lat_min"] + miss["lat_max"]) / 2,
               marker="*", s=70, color="red", zorder=3)
    for x in (-limb, limb):
        ax.axvline(x, color="red", linestyle="--", linewidth=1)
    ax.set_xlim(lon_edges[0], lon_edges[-1])
    ax.set_ylim(lat_edges[0], lat_edges[-1])
    ax.set_aspect("equal")
    step = 15 if (lon_edges[-1] - lon_edges[0]) > 120 else 10
    ax.set_xticks(np.arange(math.ceil(lon_edges[0] / step) * step, lon_edges[-1] + 1e-9, step))
    ax.set_xlabel("heliographic longitude (degrees from central meridian)")
    ax.set_ylabel("heliographic latitude (degrees)")
    n = int((cells["tp"] + cells["fn"]).sum())
    names = " and ".join(c.upper() for c in classes)
    ax.set_title(title or f"Recall of {names}-class flare instances at threshold {threshold:g} "
                 f"({n} with position, {cell:g}° cells)")
    handles = [Line2D([], [], marker="*", color="red", linestyle="None", markersize=9, label="flares, none forecast"),
               Line2D([], [], color="red", linestyle="--", label=f"central/limb boundary ±{limb:g}°")]
    if n_unknown:
        handles.append(Line2D([], [], linestyle="None", label=f"{n_unknown} instance(s) of unknown position not shown"))
    # Outside the axes, so that it never hides a cell.
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    return out_png


#: Recall maps :func:`write_locations` draws: (classes, name in recall_cells.csv, file).
RECALL_MAPS = ((("X",), "X", "recall_map_X.png"), (("M",), "M", "recall_map_M.png"),
               (("X", "M"), "X+M", "recall_map.png"))


def write_locations(
    predictions,
    out_dir: str | os.PathLike,
    threshold: float = metrics.THRESHOLD,
    cell: float = CELL_DEG,
) -> dict:
    """Write the location analysis of X and M flares to ``out_dir`` and return its result.

    Files: ``locations.json`` (the :func:`location_analysis` structure), ``recall_cells.csv``
    (the :func:`recall_cells` table for X, M and both together, told apart by the
    ``classes`` column: ``X``, ``M``, ``X+M``), and the maps ``recall_map.png`` (X and M
    together), ``recall_map_X.png``, ``recall_map_M.png``.
    """
    threshold = check_threshold(threshold)
    cell = check_cell(cell)
    frames = as_frames(predictions)
    result = location_analysis(frames, threshold)
    out_dir = ensure_dir(out_dir)
    cells = []
    for classes, name, png in RECALL_MAPS:
        table = recall_cells(frames, threshold, classes, cell)
        table.insert(0, "classes", name)
        cells.append(table)
        recall_map(frames, threshold, out_dir / png, classes, cell)
    write_csv(pd.concat(cells, ignore_index=True), out_dir / "recall_cells.csv")
    write_text(json.dumps(result, indent=2) + "\n", out_dir / "locations.json")
    logger.info("wrote %s, recall_cells.csv and %s", out_dir / "locations.json",
                ", ".join(png for _, _, png in RECALL_MAPS))
    return result
