"""Central vs near-limb flares on the page: hits and misses by where the flare's source was.

Rendered from the library's location analysis (``flarelens locations --json``'s
structure: per class, ``{"tp", "fn"}`` per region key, ``unknown`` a count). Near-limb
counts are split by whether the flare's source was on the visible hemisphere at the image
time, and east from west, when the analysis carries those keys.
"""

from __future__ import annotations

from typing import Mapping

from flarelens.report.markup import esc, img, num, p

#: Rows of the location table: (name on the page, key of all instances, key of visible, key of hidden).
#: A side's "all" is the sum of its visible and hidden parts (``None``: add them).
ROWS = (
    ("central (|lon| ≤ 70°)", "central", None, None),
    ("near-limb (|lon| > 70°)", "limb", "limb_visible", "limb_hidden"),
    ("near-limb east (lon < −70°)", None, "limb_east_visible", "limb_east_hidden"),
    ("near-limb west (lon > 70°)", None, "limb_west_visible", "limb_west_hidden"),
)

HIDDEN_MEANING = (
    "A flare whose source was <em>hidden</em> at the image time (behind the limb: the label looks 24 h ahead and "
    "the Sun rotates about 13° a day) cannot be seen on the magnetogram. A hit on a hidden source means the model "
    "predicted the flare from something else on the disk (other active regions, the overall activity), not from "
    "the flare's own region; a miss there says nothing about the model's sight near the limb."
)


def _counts(value) -> tuple[int, int] | None:
    if isinstance(value, Mapping) and "tp" in value and "fn" in value:
        return int(value["tp"]), int(value["fn"])
    return None


def location_rows(result: Mapping) -> list[dict]:
    """The location table's rows: ``{"class", "region", "all", "visible", "hidden"}``, each
    part ``(tp, fn)`` or None when the analysis does not give it; ``unknown``: instances
    without a position."""
    rows = []
    for cls, parts in result.items():
        if not isinstance(parts, Mapping):
            continue
        for name, key_all, key_vis, key_hid in ROWS:
            vis = _counts(parts.get(key_vis)) if key_vis else None
            hid = _counts(parts.get(key_hid)) if key_hid else None
            total = _counts(parts.get(key_all)) if key_all else None
            if total is None and vis is not None and hid is not None:
                total = (vis[0] + hid[0], vis[1] + hid[1])
            if total is None:
                continue
            rows.append({"class": cls, "region": name, "all": total, "visible": vis, "hidden": hid})
        if "unknown" in parts:
            rows.append({"class": cls, "region": "position unknown", "unknown": int(parts["unknown"])})
    return rows


def _cells(counts: tuple[int, int] | None, recall: bool = True) -> str:
    if counts is None:
        return '<td colspan="3">—</td>' if recall else '<td colspan="2">—</td>'
    tp, fn = counts
    out = f"<td>{tp:,}</td><td>{fn:,}</td>"
    if recall:
        out += f"<td>{num(tp / (tp + fn)) if tp + fn else '—'}</td>"
    return out


def location_table(rows: list[dict]) -> str:
    """All, visible-source and hidden-source hits and misses side by side, per class and region."""
    head = ('<thead><tr><th rowspan="2">class</th><th rowspan="2">flare region</th>'
            '<th colspan="3">all instances</th><th colspan="3">source visible at image time</th>'
            '<th colspan="2">source hidden at image time</th></tr>'
            "<tr><th>TP</th><th>FN</th><th>recall</th><th>TP</th><th>FN</th><th>recall</th><th>TP</th><th>FN</th></tr></thead>")
    body = ""
    for r in rows:
        if "unknown" in r:
            body += (f"<tr><th>{esc(r['class'])}</th><td>{esc(r['region'])}</td>"
                     f'<td colspan="8">{r["unknown"]:,} instance{"s" if r["unknown"] != 1 else ""}, not in the rows above</td></tr>')
            continue
        body += (f"<tr><th>{esc(r['class'])}</th><td>{esc(r['region'])}</td>" + _cells(r["all"])
                 + _cells(r["visible"]) + _cells(r["hidden"], recall=False) + "</tr>")
    return f'<table class="t">{head}<tbody>{body}</tbody></table>'


def locations_section(result: Mapping, recall_png: bytes | None) -> str:
    """The location table, what a hidden source means, and the recall map."""
    rows = location_rows(result)
    if not rows:
        return p("No X- or M-class flare instance among the scored predictions.")
    body = p("Instances whose largest flare in the window is X or M class, by the flare's heliographic longitude "
             "at its start. TP: forecast yes (caught); FN: forecast no (missed). Does the model still catch flares "
             "from regions near the limb, where the magnetogram is foreshortened?")
    body += location_table(rows)
    if any(r.get("hidden") is not None for r in rows):
        body += p(HIDDEN_MEANING, "note")
    else:
        body += p("This location analysis does not split near-limb flares by whether their source was visible at the "
                  "image time.", "note")
    if recall_png is not None:
        body += "<h3>Recall map (5° cells)</h3>" + img(recall_png, "recall map", "900px")
    return body
