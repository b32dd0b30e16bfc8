"""Central vs near-limb flares on the page: hits and misses by where the flare's source was.

Rendered from the library's location analysis (``flarelens locations --json``'s
structure: per class, ``{"tp", "fn"}`` per region key, ``unknown`` a count). Near-limb
counts are split by whether the flare's source was on the visible hemisphere at the image
time, and east from west, when the analysis carries those keys.
"""

from __future__ import annotations

from typing import Mapping

from flarelens.report.markup import esc, html_table, img, num, p

#: Region keys of the location analysis, in page order, with their names on the page.
REGIONS = {
    "central": "central (|lon| ≤ 70°)",
    "limb": "near-limb (|lon| > 70°), all",
    "limb_visible": "near-limb, source visible at image time",
    "limb_hidden": "near-limb, source hidden at image time",
    "east": "near-limb east, all",
    "east_visible": "near-limb east, visible",
    "east_hidden": "near-limb east, hidden",
    "limb_east": "near-limb east, all",
    "limb_east_visible": "near-limb east, visible",
    "limb_east_hidden": "near-limb east, hidden",
    "west": "near-limb west, all",
    "west_visible": "near-limb west, visible",
    "west_hidden": "near-limb west, hidden",
    "limb_west": "near-limb west, all",
    "limb_west_visible": "near-limb west, visible",
    "limb_west_hidden": "near-limb west, hidden",
}

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


def _flatten(parts: Mapping, prefix: str = "") -> list[tuple[str, tuple[int, int]]]:
    """``(region key, (tp, fn))`` of a class's analysis, nested dicts joined with ``_``."""
    out = []
    for key, value in parts.items():
        name = f"{prefix}_{key}" if prefix else str(key)
        c = _counts(value)
        if c is not None:
            out.append((name, c))
        elif isinstance(value, Mapping):
            out += _flatten(value, name)
    return out


def location_rows(result: Mapping) -> list[dict]:
    """One row per class and region: ``{"class", "region", "tp", "fn", "recall", "indent"}``, page order."""
    rows = []
    order = list(REGIONS)
    for cls, parts in result.items():
        if not isinstance(parts, Mapping):
            continue
        found = dict(_flatten(parts))
        keys = sorted(found, key=lambda k: (order.index(k) if k in order else len(order), k))
        for key in keys:
            tp, fn = found[key]
            label = REGIONS.get(key, key.replace("_", " "))
            rows.append({"class": cls, "region": label, "key": key, "tp": tp, "fn": fn,
                         "recall": tp / (tp + fn) if tp + fn else None,
                         "indent": key not in ("central", "limb")})
        if "unknown" in parts and not isinstance(parts["unknown"], Mapping):
            rows.append({"class": cls, "region": "position unknown", "key": "unknown", "tp": None, "fn": None,
                         "recall": None, "instances": int(parts["unknown"]), "indent": False})
    return rows


def locations_section(result: Mapping, recall_png: bytes | None) -> str:
    """The location table, what a hidden source means, and the recall map."""
    rows = location_rows(result)
    if not rows:
        return p("No X- or M-class flare instance among the scored predictions.")
    table_rows = []
    for r in rows:
        region = ("&emsp;" if r["indent"] else "") + esc(r["region"])
        if r["key"] == "unknown":
            table_rows.append([esc(r["class"]), region, "—", "—", "—", f"{r['instances']:,} instances"])
        else:
            table_rows.append([esc(r["class"]), region, f"{r['tp']:,}", f"{r['fn']:,}", num(r["recall"]), ""])
    header = ["class", "region of the flare", "TP (caught)", "FN (missed)", "recall", ""]
    body = p("Instances whose largest flare in the window is X or M class, by the flare's heliographic longitude "
             "at its start. Does the model still catch flares from regions near the limb, where the magnetogram is "
             "foreshortened?")
    body += html_table(header, table_rows)
    if any("hidden" in r["key"] for r in rows):
        body += p(HIDDEN_MEANING, "note")
    else:
        body += p("This location analysis does not split near-limb flares by whether their source was visible at the "
                  "image time.", "note")
    if recall_png is not None:
        body += "<h3>Recall map (5° cells)</h3>" + img(recall_png, "recall map", "900px")
    return body
