"""Scores per instance and method (scores.csv) and their aggregates per group (summary.json).

Every instance with a flare position is scored on two neighbourhoods of the flare at the
image time (:mod:`flarelens.explain.truth`): ``image`` (the on-disk pixels within a
fraction of the solar radius of the flare's pixel) and ``heliographic`` (the on-disk pixels
within r great-circle degrees). ``mass``/``hit``/``area`` are those of the run's chosen
neighbourhood (``neighbourhood`` column), ``image_*`` and ``helio_*`` both. An instance
whose flare source was behind the limb at the image time (``visible`` 0) is scored on no
neighbourhood and on no ground truth: it is counted apart (``n_hidden``) and its
attribution is described by its share on the disk's strong-field regions
(``strong_mass`` against their area ``strong_area``), never averaged in as 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from flarelens.explain import scores, storage, truth
from flarelens.explain.instances import POSITIONS

#: Columns of DIR/scores.csv, one row per instance x method.
SCORE_COLUMNS = [
    "timestamp", "file", "method", "target", "flare_prob", "model_prob", "outcome", "goes_class",
    "flare_class", "fl_lon", "fl_lat", "position", "lon_image", "lat_image", "visible", "training_data",
    "neighbourhood", "radius_deg", "image_radius", "mass", "hit", "area",
    "helio_mass", "helio_hit", "helio_area", "image_mass", "image_hit", "image_area",
    "gt_mass", "gt_hit", "gt_area", "strong_mass", "strong_area",
    "deletion_auc", "deletion_auc_random", "conv_delta",
]

#: Groups of instances summarised per method in summary.json and on the console: words
#: combined with "and" — flaring (target 1), central / limb (|fl_lon| <= 70 deg or beyond),
#: TP / FN / FP / TN (outcome at the threshold), hidden (flare source behind the limb at
#: the image time).
GROUPS = ("all", "flaring", "flaring central", "flaring limb", "central", "limb", "TP", "FN", "FP", "TN",
          "central TP", "central FN", "limb TP", "limb FN", "hidden")

_NAN3 = {"mass": np.nan, "hit": np.nan, "area": np.nan}


def score_table(frame: pd.DataFrame, stems, maps_dir: Path, methods, settings) -> pd.DataFrame:
    """One row per instance x method (:data:`SCORE_COLUMNS`) from the map files.

    ``settings`` gives ``neighbourhood`` (one of :data:`flarelens.explain.truth.NEIGHBOURHOODS`),
    ``radius_deg`` and ``image_radius`` (fraction of the solar radius). ``frame`` may carry
    a boolean ``training_data`` column (rows the model trained on).
    """
    records = []
    for (_, row), stem in zip(frame.iterrows(), stems):
        z = storage.read_map(storage.map_path(maps_dir, stem), methods)
        disk = z["disk"]
        size = disk.shape[-1]
        dist = z["flare_distance_deg"]
        has_flare = bool(np.isfinite(dist).any())
        visible = truth.source_visible(row) if has_flare else np.nan
        lon_image, lat_image = truth.flare_at_image_time(row)
        scored = has_flare and visible == 1.0
        radius_px = truth.disk_radius_px(row["time"], size)
        regions = {
            "helio": truth.heliographic_neighbourhood(dist, settings.radius_deg),
            "image": truth.image_neighbourhood(z["flare_xy"], disk, settings.image_radius * radius_px),
        }
        gt_xyr = z["truth_xyr"]
        gt = scores.circle_mask(disk.shape, *gt_xyr) if np.all(np.isfinite(gt_xyr)) and visible != 0.0 else None
        strong = truth.strong_field_regions(z["image"], disk, radius_px)
        fractions = z["deletion_fractions"]
        random_auc = float(scores.curve_auc(fractions, z["deletion_random"])) if "deletion_random" in z else np.nan
        for m in methods:
            attr = z[f"map_{m}"]
            loc = {k: scores.localisation(attr, r, disk) if scored else _NAN3 for k, r in regions.items()}
            chosen = loc["image" if settings.neighbourhood == "image" else "helio"]
            gtl = scores.localisation(attr, gt, disk) if gt is not None else _NAN3
            key = f"deletion_{m}"
            records.append({
                "timestamp": row["timestamp"], "file": row["file"], "method": m, "target": int(row["target"]),
                "flare_prob": float(row["flare_prob"]), "model_prob": float(z["model_prob"]),
                "outcome": row["outcome"], "goes_class": row["goes_class"], "flare_class": row["flare_class"],
                "fl_lon": row["fl_lon"], "fl_lat": row["fl_lat"], "position": row["position"],
                "lon_image": lon_image, "lat_image": lat_image, "visible": visible,
                "training_data": int(bool(row.get("training_data", False))),
                "neighbourhood": settings.neighbourhood,
                "radius_deg": settings.radius_deg if has_flare else np.nan,
                "image_radius": settings.image_radius if has_flare else np.nan,
                "mass": chosen["mass"], "hit": chosen["hit"], "area": chosen["area"],
                "helio_mass": loc["helio"]["mass"], "helio_hit": loc["helio"]["hit"], "helio_area": loc["helio"]["area"],
                "image_mass": loc["image"]["mass"], "image_hit": loc["image"]["hit"], "image_area": loc["image"]["area"],
                "gt_mass": gtl["mass"], "gt_hit": gtl["hit"], "gt_area": gtl["area"],
                "strong_mass": scores.mass_fraction(attr, strong, disk), "strong_area": scores.area_fraction(strong, disk),
                "deletion_auc": float(scores.curve_auc(fractions, z[key])) if key in z else np.nan,
                "deletion_auc_random": random_auc,
                "conv_delta": float(z[f"delta_{m}"]),
            })
    return pd.DataFrame.from_records(records, columns=SCORE_COLUMNS)


def _group_mask(table: pd.DataFrame, group: str) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for part in group.split():
        if part == "all":
            continue
        if part == "flaring":
            mask &= table["target"] == 1
        elif part == "hidden":
            mask &= table["visible"] == 0
        elif part in POSITIONS:
            mask &= table["position"] == part
        else:
            mask &= table["outcome"] == part
    return mask


def _localisation_stats(rows: pd.DataFrame, prefix: str, out_prefix: str) -> dict:
    mass, area, hit = rows[f"{prefix}mass"], rows[f"{prefix}area"], rows[f"{prefix}hit"]
    loc = np.isfinite(mass) & np.isfinite(area)
    hits = np.isfinite(hit)
    return {
        f"{out_prefix}mass": _mean(mass[loc]),
        f"{out_prefix}mass_random": _mean(area[loc]),
        f"{out_prefix}hit": _mean(hit[hits]),
        f"{out_prefix}hit_random": _mean(area[hits]),
    }


def group_stats(rows: pd.DataFrame) -> dict:
    """Aggregate scores of one method over some instances (keys in docs/design.md).

    Instances whose flare source was hidden at the image time are counted (``n_hidden``)
    and described apart (``hidden_strong_mass`` against ``hidden_strong_mass_random``);
    every other average leaves them out.
    """
    hidden = rows["visible"] == 0
    seen = rows[~hidden]
    loc = seen[np.isfinite(seen["mass"]) & np.isfinite(seen["area"])]
    gt = seen[np.isfinite(seen["gt_mass"])]
    gt_hits = seen[np.isfinite(seen["gt_hit"])]
    out = {
        "n": int(len(rows)),
        "n_located": int(len(loc)),
        "n_hidden": int(hidden.sum()),
        "n_training": int(rows["training_data"].astype(bool).sum()),
        "mass": _mean(loc["mass"]),
        "mass_random": _mean(loc["area"]),
        "mass_over_random": _ratio(_mean(loc["mass"]), _mean(loc["area"])),
        "mass_p_value": _wilcoxon_greater(loc["mass"], loc["area"]),
        "hit": _mean(seen.loc[np.isfinite(seen["hit"]), "hit"]),
        "hit_random": _mean(seen.loc[np.isfinite(seen["hit"]), "area"]),
    }
    out.update(_localisation_stats(seen, "helio_", "helio_"))
    out.update(_localisation_stats(seen, "image_", "image_"))
    out.update({
        "n_truth": int(len(gt)),
        "gt_mass": _mean(gt["gt_mass"]),
        "gt_mass_random": _mean(gt["gt_area"]),
        "gt_hit": _mean(gt_hits["gt_hit"]),
        "gt_hit_random": _mean(gt_hits["gt_area"]),
        "strong_mass": _mean(seen["strong_mass"]),
        "strong_mass_random": _mean(seen["strong_area"]),
        "hidden_strong_mass": _mean(rows.loc[hidden, "strong_mass"]),
        "hidden_strong_mass_random": _mean(rows.loc[hidden, "strong_area"]),
        "deletion_auc": _mean(seen["deletion_auc"]),
        "deletion_auc_random": _mean(seen["deletion_auc_random"]),
        "conv_delta_abs_median": float(np.nanmedian(np.abs(rows["conv_delta"]))) if rows["conv_delta"].notna().any() else None,
    })
    return out


def summarise(table: pd.DataFrame, methods, settings) -> dict:
    """The summary.json body: the scoring settings and ``{"methods": {method: {group: stats}}}``
    over :data:`GROUPS` (a group appears when it has instances; "all" always)."""
    first = table.drop_duplicates("timestamp") if len(table) else table
    summary = {
        "neighbourhood": settings.neighbourhood, "radius_deg": settings.radius_deg,
        "image_radius": settings.image_radius, "strong_field_gauss": truth.STRONG_FIELD_GAUSS,
        "threshold": settings.threshold,
        "deletion_fractions": [float(f) for f in scores.DELETION_FRACTIONS],
        "hidden": int((first["visible"] == 0).sum()),
        "training_rows": int(first["training_data"].astype(bool).sum()),
        "training_data": bool(first["training_data"].astype(bool).any()),
        "methods": {},
    }
    for m in methods:
        rows = table[table["method"] == m]
        groups = {}
        for g in GROUPS:
            sel = rows[_group_mask(rows, g)]
            if len(sel) or g == "all":
                groups[g] = group_stats(sel)
        summary["methods"][m] = groups
    return summary


def _mean(values) -> float | None:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def _ratio(a, b):
    return float(a / b) if a is not None and b else None


def _wilcoxon_greater(a, b) -> float | None:
    """One-sided Wilcoxon signed-rank p-value that ``a`` exceeds ``b`` pairwise."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[np.isfinite(d)]
    if d.size < 5 or not np.any(d):
        return None
    from scipy.stats import wilcoxon

    return float(wilcoxon(d, alternative="greater").pvalue)


def json_safe(value):
    """``value`` with numpy scalars made plain and non-finite floats made None (for JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def neighbourhood_text(summary: dict) -> str:
    """Words for the run's neighbourhood, e.g. "within 0.17 solar radii of the flare on the image"."""
    if summary.get("neighbourhood") == "heliographic":
        return f"within {summary['radius_deg']:g} heliographic degrees of the flare"
    return f"within {summary['image_radius']:g} solar radii of the flare on the image"


def format_summary(summary: dict) -> str:
    """The console table: per method and group, localisation and deletion against random."""

    def f(v, fmt="{:.2f}"):
        return "   -" if v is None else fmt.format(v)

    r = "{:.3f}"  # random baselines are small: one more digit

    lines = []
    if summary.get("training_data"):
        lines.append(f"TRAINING DATA: {summary['training_rows']} instance(s) are rows the model trained on; "
                     "their scores do not show how it generalises")
    lines += [
        f"localisation {neighbourhood_text(summary)} (random = area share of the disk); "
        "deletion AUC = mean flare probability while deleting the top 0-50 % (lower = more faithful)",
        f"{'method':<15}{'group':<16}{'n':>5}{'loc':>5}{'hid':>5}  {'mass':>5} {'(rand)':>6}  {'hit':>5} {'(rand)':>6}  "
        f"{'gt mass':>7} {'(rand)':>6}  {'gt hit':>6}  {'del AUC':>7} {'(rand)':>6}",
    ]
    for m, groups in summary["methods"].items():
        for g in ("all", "flaring", "flaring central", "flaring limb", "TP", "FN"):
            s = groups.get(g)
            if s is None or (g != "all" and s["n"] == 0):
                continue
            lines.append(
                f"{m:<15}{g:<16}{s['n']:>5}{s['n_located']:>5}{s['n_hidden']:>5}  {f(s['mass']):>5} "
                f"{f(s['mass_random'], r):>6}  {f(s['hit']):>5} {f(s['hit_random'], r):>6}  {f(s['gt_mass']):>7} "
                f"{f(s['gt_mass_random'], r):>6}  {f(s['gt_hit']):>6}  {f(s['deletion_auc']):>7} "
                f"{f(s['deletion_auc_random']):>6}"
            )
    hidden = summary.get("hidden", 0)
    if hidden:
        lines.append(f"{hidden} instance(s) with the flare source behind the limb at the image time (hid): in no "
                     "average above; share of their attribution on the disk's strong-field regions (random):")
        for m, groups in summary["methods"].items():
            s = groups["all"]
            lines.append(f"  {m:<15}{f(s['hidden_strong_mass']):>5} {f(s['hidden_strong_mass_random'], r):>6}")
    return "\n".join(lines)
