"""``flarelens simulate``: synthetic full-disk magnetograms whose regions follow the real catalog."""

from __future__ import annotations

import argparse

from flarelens.simulate import simulate


def register(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate HMI-like full-disk magnetograms whose active regions follow a GOES flare catalog",
        description="Write one synthetic line-of-sight magnetogram every CADENCE from START to END (UTC) under "
        "OUT/YYYY/MM/DD/HMI.mYYYY.MM.DD_HH.MM.SS.jpg (8-bit, 0 G = 128, +-250 G clipped, off-disk 0) and the "
        "ground truth OUT/regions.csv (every region on the visible disk: position, pixel centroid, radius, "
        "largest flare in the next 24 h). Flaring regions sit where the catalog's flares happened and grow "
        "more complex ahead of big flares; quiet regions are distractors. Existing images are kept, so an "
        "interrupted run resumes; the same seed gives the same images.",
    )
    p.add_argument("--start", required=True, help="first time, UTC (e.g. 2011-02-10 or 2011-02-10T06:00)")
    p.add_argument("--end", required=True, help="last time, UTC, inclusive")
    p.add_argument("--cadence", default="1h", help="time between images (default: 1h)")
    p.add_argument("--size", type=int, default=512, help="image size N (N x N pixels, default: 512)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (images and regions.csv)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--catalog", help="GOES flare catalog CSV (default: the bundled solar-cycle-24 catalog)")
    p.add_argument("--workers", type=int, help="processes to render with (default: all cores)")
    # Also accepted after the subcommand; SUPPRESS keeps it from overriding `flarelens -q simulate`.
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar (as flarelens -q)")
    p.set_defaults(func=run)


def run(args) -> int:
    summary = simulate(
        args.start, args.end, cadence=args.cadence, size=args.size, out=args.out, seed=args.seed,
        catalog=args.catalog, workers=args.workers,
    )
    print(summary.format())
    return 0
