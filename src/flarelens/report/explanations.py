"""Where the model looks, on the page: explain's summary.json as one compact table per output.

Localisation scores (share of positive attribution in a neighbourhood of the flare, and
the pointing game) always beside their random-map baseline; faithfulness (deletion curve
area) beside its random order. Instances whose source was hidden at the image time are
never averaged in: their number is stated apart.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from flarelens.report.markup import esc, img, p, table

#: Groups of explain's summary shown on the page, and how they are named there.
GROUPS = {
    "flaring": "all flaring", "flaring central": "flaring, central", "flaring limb": "flaring, near-limb",
    "flaring limb visible": "flaring, near-limb, source visible", "TP": "hits (TP)", "FN": "misses (FN)",
}

#: Per-method statistics shown, with their column names; a pair's random baseline follows it.
STATS = {
    "n": "instances",
    "mass": "attribution within r (heliographic)", "mass_random": "random map",
    "mass_image": "attribution within image-space r", "mass_image_random": "random map (image)",
    "hit": "pointing game", "hit_random": "random pointing",
    "gt_mass": "within true region", "gt_mass_random": "random (true region)",
    "deletion_auc": "deletion area", "deletion_auc_random": "random deletion",
}

#: summary.json keys that may hold the number of instances whose source was hidden at the image time.
HIDDEN_KEYS = ("hidden", "source_not_visible", "n_hidden", "hidden_sources")


def summary_table(summary: Mapping) -> pd.DataFrame:
    """summary.json as a table: one row per method and group, the statistics of :data:`STATS`."""
    rows = []
    for method, groups in (summary.get("methods") or {}).items():
        for group, name in GROUPS.items():
            stats = groups.get(group)
            if not stats:
                continue
            row = {"method": method, "group": name}
            for key, label in STATS.items():
                if key in stats:
                    value = stats.get(key)
                    row[label] = (int(value) if key == "n" and value is not None else
                                  float("nan") if value is None else float(value))
            rows.append(row)
    frame = pd.DataFrame(rows)
    if len(frame) and "instances" in frame:
        frame["instances"] = frame["instances"].astype("Int64")
    return frame


def hidden_count(summary: Mapping) -> int | None:
    """How many explained instances had their source hidden at the image time, when the summary says."""
    for key in HIDDEN_KEYS:
        value = summary.get(key)
        if isinstance(value, Mapping):
            value = value.get("n", value.get("count"))
        if isinstance(value, (int, float)):
            return int(value)
    return None


def neighbourhood_text(summary: Mapping) -> str:
    """Which neighbourhoods the localisation uses (heliographic radius, image-space radius)."""
    parts = []
    radius = summary.get("radius_deg")
    if isinstance(radius, (int, float)):
        parts.append(f"heliographic: within r = {radius:g}° of the flare")
    image_r = summary.get("image_radius", summary.get("image_radius_rsun"))
    if isinstance(image_r, (int, float)):
        parts.append(f"image-space: on-disk pixels within {image_r:g} solar radii of the flare's position at image time "
                     "(holds its area near the limb, where a heliographic circle becomes a thin sliver)")
    default = summary.get("neighbourhood")
    text = "Neighbourhoods: " + "; ".join(parts) + "." if parts else ""
    if default:
        text += f" Default: {esc(default)}."
    return text


def explanation_block(name: str, summary: Mapping, figures: list) -> str:
    """One explanation output: settings, hidden sources, the score table, the comparison figure."""
    body = f"<h3>{esc(name)}</h3>"
    body += p("Attribution to the flare class. Localisation: the share of positive attribution in the flare's "
              "neighbourhood (and the pointing game: is the maximum there), each beside a random map's. "
              "Faithfulness: flare probability as the most-attributed pixels are deleted (a lower area is more "
              "faithful). " + neighbourhood_text(summary))
    hidden = hidden_count(summary)
    if hidden is not None:
        body += p(f"<strong>{hidden:,} explained instance{'s' if hidden != 1 else ''}</strong> had the flare's source "
                  "hidden behind the limb at the image time: counted apart, never averaged in as 0.")
    frame = summary_table(summary)
    if frame.empty:
        body += p("No explained instance with a flare.")
    else:
        body += table(frame)
    for fig in figures:
        body += img(fig.read_bytes(), fig.stem, "100%")
    return body


def explanations_section(runs) -> str:
    """Every explanation output under the run directory."""
    if not runs:
        return p("No explanation output (scores.csv + summary.json) in this directory; make one with "
                 "<code>flarelens explain</code>.")
    return "".join(explanation_block(run.name, run.summary, run.figures) for run in runs)
