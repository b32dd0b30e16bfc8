"""Scores per instance and method (scores.csv) and their aggregates per group (summary.json)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from flarelens.explain import scores
from flarelens.explain.instances import POSITIONS

#: Columns of DIR/scores.csv.
SCORE_COLUMNS = [
    "timestamp", "file", "method", "target", "flare_prob", "model_prob", "outcome", "goes_class",
    "flare_class", "fl_lon", "fl_lat", "position", "radius_deg", "mass", "hit", "area",
    "gt_mass", "gt_hit", "gt_area", "deletion_auc", "deletion_auc_random", "conv_delta",
]

#: Groups of instances summarised per method in summary.json and on the console: words
#: combined with "and" — flaring (target 1), central / limb (|fl_lon| <= 70 deg or beyond),
#: TP / FN / FP / TN (outcome at the threshold).
GROUPS = ("all", "flaring", "flaring central", "flaring limb", "central", "limb", "TP", "FN", "FP", "TN",
          "central TP", "central FN", "limb TP", "limb FN")



def score_table(frame: pd.DataFrame, stems, maps_dir: Path, methods, radius_deg: float) -> pd.DataFrame:
    """One row per instance x method (:data:`SCORE_COLUMNS`) from the npz files."""
    records = []
    for (_, row), stem in zip(frame.iterrows(), stems):
        with np.load(maps_dir / f"{stem}.npz") as z:
            disk = z["disk"]
            dist = z["flare_distance_deg"]
            has_flare = bool(np.isfinite(dist).any())
            region = np.nan_to_num(dist, nan=np.inf) <= radius_deg
            truth = z["truth_xyr"]
            gt = scores.circle_mask(disk.shape, *truth) if np.all(np.isfinite(truth)) else None
            fractions = z["deletion_fractions"]
            random_auc = float(scores.curve_auc(fractions, z["deletion_random"])) if "deletion_random" in z.files else np.nan
            for m in methods:
                attr = z[f"map_{m}"]
                loc = scores.localisation(attr, region, disk) if has_flare else dict.fromkeys(("mass", "hit", "area"), np.nan)
                gtl = scores.localisation(attr, gt, disk) if gt is not None else dict.fromkeys(("mass", "hit", "area"), np.nan)
                key = f"deletion_{m}"
                records.append({
                    "timestamp": row["timestamp"], "file": row["file"], "method": m, "target": int(row["target"]),
                    "flare_prob": float(row["flare_prob"]), "model_prob": float(z["model_prob"]),
                    "outcome": row["outcome"], "goes_class": row["goes_class"], "flare_class": row["flare_class"],
                    "fl_lon": row["fl_lon"], "fl_lat": row["fl_lat"], "position": row["position"],
                    "radius_deg": radius_deg if has_flare else np.nan,
                    "mass": loc["mass"], "hit": loc["hit"], "area": loc["area"],
                    "gt_mass": gtl["mass"], "gt_hit": gtl["hit"], "gt_area": gtl["area"],
                    "deletion_auc": float(scores.curve_auc(fractions, z[key])) if key in z.files else np.nan,
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
        elif part in POSITIONS:
            mask &= table["position"] == part
        else:
            mask &= table["outcome"] == part
    return mask


def group_stats(rows: pd.DataFrame) -> dict:
    """Aggregate scores of one method over some instances (see summary.json)."""
    loc = rows[np.isfinite(rows["mass"]) & np.isfinite(rows["area"])]
    hit_rows = rows[np.isfinite(rows["hit"])]
    gt = rows[np.isfinite(rows["gt_mass"])]
    out = {
        "n": int(len(rows)),
        "n_located": int(len(loc)),
        "mass": _mean(loc["mass"]),
        "mass_random": _mean(loc["area"]),
        "mass_over_random": _ratio(_mean(loc["mass"]), _mean(loc["area"])),
        "mass_p_value": _wilcoxon_greater(loc["mass"], loc["area"]),
        "hit": _mean(hit_rows["hit"]),
        "hit_random": _mean(hit_rows["area"]),
        "n_truth": int(len(gt)),
        "gt_mass": _mean(gt["gt_mass"]),
        "gt_mass_random": _mean(gt["gt_area"]),
        "gt_hit": _mean(rows.loc[np.isfinite(rows["gt_hit"]), "gt_hit"]),
        "gt_hit_random": _mean(rows.loc[np.isfinite(rows["gt_hit"]), "gt_area"]),
        "deletion_auc": _mean(rows["deletion_auc"]),
        "deletion_auc_random": _mean(rows["deletion_auc_random"]),
        "conv_delta_abs_median": float(np.nanmedian(np.abs(rows["conv_delta"]))) if rows["conv_delta"].notna().any() else None,
    }
    return out


def summarise(table: pd.DataFrame, methods, settings) -> dict:
    """``{"radius_deg", "threshold", "methods": {method: {group: stats}}}`` over :data:`GROUPS`."""
    summary = {"radius_deg": settings.radius_deg, "threshold": settings.threshold,
               "deletion_fractions": [float(f) for f in scores.DELETION_FRACTIONS], "methods": {}}
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


def format_summary(summary: dict) -> str:
    """The console table: per method and group, localisation and deletion against random."""

    def f(v, fmt="{:.2f}"):
        return "   -" if v is None else fmt.format(v)

    r = "{:.3f}"  # random baselines are small: one more digit

    lines = [
        f"localisation within {summary['radius_deg']:g} deg of the flare (random = area share of the disk); "
        "deletion AUC = mean flare probability while deleting the top 0-50 % (lower = more faithful)",
        f"{'method':<15}{'group':<16}{'n':>5}{'loc':>5}  {'mass':>5} {'(rand)':>6}  {'hit':>5} {'(rand)':>6}  "
        f"{'gt mass':>7} {'(rand)':>6}  {'gt hit':>6}  {'del AUC':>7} {'(rand)':>6}",
    ]
    for m, groups in summary["methods"].items():
        for g in ("all", "flaring", "flaring central", "flaring limb", "TP", "FN"):
            s = groups.get(g)
            if s is None or (g != "all" and s["n"] == 0):
                continue
            lines.append(
                f"{m:<15}{g:<16}{s['n']:>5}{s['n_located']:>5}  {f(s['mass']):>5} {f(s['mass_random'], r):>6}  "
                f"{f(s['hit']):>5} {f(s['hit_random'], r):>6}  {f(s['gt_mass']):>7} {f(s['gt_mass_random'], r):>6}  "
                f"{f(s['gt_hit']):>6}  {f(s['deletion_auc']):>7} {f(s['deletion_auc_random']):>6}"
            )
    return "\n".join(lines)


