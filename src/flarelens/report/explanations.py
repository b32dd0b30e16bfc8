"""Where the model looks, on the page: explain's summary.json as one compact table per output.

Every score sits beside its random-map baseline (``0.35 vs 0.02``): the share of positive
attribution in the flare's neighbourhood — image-space (on-disk pixels within a fraction of
the solar radius of the flare at the image time) and heliographic (within r degrees) — the
pointing game, the true simulated region, and faithfulness (deletion curve area). Instances
whose source was hidden behind the limb at the image time are never averaged in: their number
is stated, and where their attribution went instead (the disk's strong-field regions).
"""

from __future__ import annotations

from typing import Mapping

from flarelens.report.markup import esc, html_table, img, num, p

#: Groups of explain's summary shown on the page, and how they are named there.
GROUPS = {
    "flaring": "all flaring", "flaring central": "flaring, central", "flaring limb": "flaring, near-limb",
    "TP": "hits (TP)", "FN": "misses (FN)", "hidden": "source hidden at image time",
}

#: Score columns: (heading, key of the model's score, key of the random map's).
PAIRS = (
    ("image-space neighbourhood", "image_mass", "image_mass_random"),
    ("heliographic neighbourhood", "helio_mass", "helio_mass_random"),
    ("pointing game", "hit", "hit_random"),
    ("true region (simulated)", "gt_mass", "gt_mass_random"),
    ("deletion area (lower = faithful)", "deletion_auc", "deletion_auc_random"),
    ("strong-field regions", "strong_mass", "strong_mass_random"),
)

#: In the hidden group, where the attribution went instead.
HIDDEN_PAIR = ("hidden_strong_mass", "hidden_strong_mass_random")


def _pair(stats: Mapping, key: str, random_key: str) -> str:
    if stats.get(key) is None:
        return "—"
    return f'{num(stats.get(key), 3)} <span class="ci">vs {num(stats.get(random_key), 3)}</span>'


def summary_rows(summary: Mapping) -> tuple[list[str], list[list[str]]]:
    """The score table of a summary.json: header and rows (HTML cells), one row per method and group."""
    default = summary.get("neighbourhood")
    heads = []
    for head, key, _ in PAIRS:
        if key.startswith("image") and default == "image" or key.startswith("helio") and default == "heliographic":
            head += " <em>(default)</em>"
        heads.append(head)
    stats = [g or {} for groups in (summary.get("methods") or {}).values() for g in groups.values()]
    used = [i for i, (_, key, _) in enumerate(PAIRS)
            if any(g.get(key) is not None or key == "strong_mass" and g.get(HIDDEN_PAIR[0]) is not None for g in stats)]
    header = ["method", "group", "instances scored", "source hidden"] + [heads[i] for i in used]
    rows = []
    for method, groups in (summary.get("methods") or {}).items():
        for group, name in GROUPS.items():
            stats = groups.get(group)
            if not stats or not stats.get("n"):
                continue
            n, hidden = int(stats["n"]), int(stats.get("n_hidden") or 0)
            if group == "hidden":
                cells = ["—"] * len(used)
                strong = [k for k, i in enumerate(used) if PAIRS[i][1] == "strong_mass"]
                if strong:
                    cells[strong[0]] = _pair(stats, *HIDDEN_PAIR)
                rows.append([esc(method), esc(name), "0", f"{hidden:,}"] + cells)
                continue
            rows.append([esc(method), esc(name), f"{n - hidden:,}", f"{hidden:,}"]
                        + [_pair(stats, PAIRS[i][1], PAIRS[i][2]) for i in used])
    return header, rows


def neighbourhood_text(summary: Mapping) -> str:
    """Which neighbourhoods the localisation uses, and which one is the default."""
    parts = []
    image_r = summary.get("image_radius")
    if isinstance(image_r, (int, float)):
        parts.append(f"image-space: the on-disk pixels within {image_r:g} solar radii of the flare's position at the "
                     "image time (its area holds at the limb)")
    radius = summary.get("radius_deg")
    if isinstance(radius, (int, float)):
        parts.append(f"heliographic: within {radius:g}° great-circle of the flare (a thin sliver of the image near "
                     "the limb, where a few degrees of position error move it off the region)")
    text = ("Neighbourhoods — " + "; ".join(parts) + ".") if parts else ""
    if summary.get("neighbourhood"):
        text += f" The pointing game uses the default, {esc(summary['neighbourhood'])}."
    return text


def explanation_block(name: str, summary: Mapping, figures: list) -> str:
    """One explanation output: what is scored, hidden sources, the score table, the comparison figure."""
    body = f"<h3>{esc(name)}</h3>"
    if summary.get("training_data"):
        body += p(f"<strong>Training data</strong>: {int(summary.get('training_rows') or 0):,} explained images are rows "
                  "the model trained on; their attributions say nothing about unseen data.", "warn")
    body += p("Attribution to the flare class. Each cell: the model's explanation <em>vs</em> a random map's (for a "
              "share of attribution, the random value is the neighbourhood's share of the disk, so it also shows how "
              "large the neighbourhood is). " + neighbourhood_text(summary))
    hidden = summary.get("hidden")
    if isinstance(hidden, (int, float)):
        hidden = int(hidden)
        body += p(f"<strong>{hidden:,} explained instance{'s' if hidden != 1 else ''}</strong> had the flare's source "
                  "hidden behind the limb at the image time: counted apart, never averaged in as 0; their row shows "
                  "the share of attribution on the disk's strong-field regions instead.")
    header, rows = summary_rows(summary)
    body += html_table(header, rows) if rows else p("No explained instance with a flare.")
    for fig in figures:
        body += img(fig.read_bytes(), fig.stem, "100%")
    return body


def explanations_section(runs) -> str:
    """Every explanation output under the run directory."""
    if not runs:
        return p("No explanation output (scores.csv + summary.json) in this directory; make one with "
                 "<code>flarelens explain</code>.")
    return "".join(explanation_block(run.name, run.summary, run.figures) for run in runs)
