"""``flarelens label``: hourly labels and folds from a GOES flare catalog."""

from __future__ import annotations

from flarelens.fileio import write_csv
from flarelens.labels import DEFAULT_END, DEFAULT_START, make_labels


def register(sub) -> None:
    p = sub.add_parser(
        "label",
        help="label sampled times from a GOES flare catalog (is there a flare >= threshold in the next window?)",
        description="Label every CADENCE from START to END (UTC): target 1 when the largest flare starting "
        "strictly after t and strictly before t + WINDOW reaches THRESHOLD. Flare positions that are missing or "
        "impossible (|lat| > 60°) are taken from the flare's NOAA region (fl_pos_source). A period outside the "
        "catalog's span is refused. Writes labels.csv with the fold (quarter of the year) of each row and prints "
        "a summary.",
    )
    p.add_argument("--catalog", help="GOES flare catalog CSV (bundled, study or SWPC format; default: the bundled solar-cycle-24 catalog)")
    p.add_argument("--start", default=DEFAULT_START, help=f"first time, UTC (default: {DEFAULT_START})")
    p.add_argument("--end", default=DEFAULT_END, help=f"last time, UTC, inclusive (default: {DEFAULT_END})")
    p.add_argument("--cadence", default="1h", help="time between samples (default: 1h)")
    p.add_argument("--window", default="24h", help="prediction window after each time (default: 24h)")
    p.add_argument("--threshold", default="M1.0", help="smallest flare that counts as positive: a GOES class or W/m² (default: M1.0)")
    p.add_argument("--images", metavar="DIR", help="keep only times whose image file exists under DIR (YYYY/MM/DD/HMI.m...)")
    p.add_argument("--gap", action="store_true", help="drop rows whose window reaches into another quarter (purged folds; off in the study)")
    p.add_argument("--date-order", choices=["dmy", "mdy"],
                   help="how the catalog's year-last dates (09/08/2011) are meant: day/month/year or month/day/year "
                   "(default: such dates are refused as ambiguous)")
    p.add_argument("--catalog-span", nargs=2, metavar=("FIRST", "LAST"),
                   help="the period (UTC) the catalog covers, when longer than its first to last flare "
                   "(default: the bundled catalog's 2010-01-01 to 2018-12-31, else the days of its first and last flare)")
    p.add_argument("--out", default="labels.csv", help="output CSV (default: labels.csv)")
    p.set_defaults(func=run)


def run(args) -> int:
    labels, summary = make_labels(
        catalog=args.catalog, start=args.start, end=args.end, cadence=args.cadence,
        window=args.window, threshold=args.threshold, images=args.images, gap=args.gap,
        date_order=args.date_order, catalog_span=args.catalog_span,
    )
    write_csv(labels, args.out)
    print(summary.format())
    print(f"wrote {args.out}")
    return 0
