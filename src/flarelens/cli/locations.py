"""``flarelens locations``: hits and misses of X- and M-class flares, central vs near-limb."""

from __future__ import annotations

import json

from flarelens.predictions import read_predictions
from flarelens.locations import (
    CELL_DEG, LIMB_LONGITUDE, check_cell, format_locations, location_analysis, write_locations,
)
from flarelens.metrics import THRESHOLD


def register(sub) -> None:
    p = sub.add_parser(
        "locations",
        help="TP and FN of X- and M-class flare instances, central (|lon| <= 70°) vs near-limb; recall map",
        description="For the instances whose largest flare is X or M class: TP (flare_prob >= THRESHOLD) and FN "
        f"for central (|lon| <= {LIMB_LONGITUDE:g}°) and near-limb (|lon| > {LIMB_LONGITUDE:g}°) flares, per class; "
        "instances of unknown position are counted apart. Counts are per instance (image), as in the study. "
        "With --out DIR also writes DIR/locations.json, DIR/recall_cells.csv (hits and misses per "
        "longitude-latitude cell) and recall maps DIR/recall_map.png (X and M), recall_map_X.png, recall_map_M.png, "
        "where a red star marks cells with flares but no correct forecast. Reads flarelens predictions.csv "
        "(goes_class, fl_lon, fl_lat, fl_start) and the study's per-class files (flare_prob, goes_class, "
        "fl_location \"(lon, lat)\", flare_start, the image path in timestamp); several files are pooled. "
        "Near-limb counts are also split by whether the flare's source was on the visible disk at the image time "
        "(its position at the flare start rotated back to the image time), east and west limb apart: a hit on a "
        "hidden source was predicted from something else on the disk.",
    )
    p.add_argument("predictions", nargs="+", metavar="PRED.csv", help="prediction files (format recognised from the header)")
    p.add_argument("--threshold", type=float, default=THRESHOLD,
                   help=f"probability at or above which a forecast is positive (default: {THRESHOLD})")
    p.add_argument("--out", metavar="DIR", help="write locations.json, recall_cells.csv and the recall maps here")
    p.add_argument("--cell", type=float, default=CELL_DEG,
                   help=f"recall-map cell size in degrees of longitude and latitude (default: {CELL_DEG:g})")
    p.add_argument("--json", action="store_true",
                   help='print {"X": {"central": {"tp", "fn"}, "limb": {"tp", "fn"}, "unknown": n, "limb_visible": '
                   '{"tp", "fn"}, "limb_hidden": {...}, "limb_east_visible": {...}, "limb_east_hidden": {...}, '
                   '"limb_west_visible": {...}, "limb_west_hidden": {...}}, "M": {...}} instead of a table')
    p.set_defaults(func=run)


def run(args) -> int:
    check_cell(args.cell)
    frames = [read_predictions(path) for path in args.predictions]
    if args.out:
        result = write_locations(frames, args.out, args.threshold, cell=args.cell)
    else:
        result = location_analysis(frames, args.threshold)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"threshold {args.threshold:g}; instances whose largest flare is X or M class")
        print(format_locations(result))
    return 0
