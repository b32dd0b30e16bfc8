"""``flarelens evaluate``: TSS and HSS of prediction files, per file and over files."""

from __future__ import annotations

import json

from flarelens.evaluate import evaluate_files, format_evaluation
from flarelens.metrics import THRESHOLD


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="TP/FP/TN/FN, TSS and HSS of prediction files; mean and standard deviation over them",
        description="Score prediction files (one per fold, typically): an instance is forecast positive when "
        "flare_prob >= THRESHOLD. Prints TP, FP, TN, FN, TSS = TP/(TP+FN) - FP/(FP+TN) and "
        "HSS = 2(TP·TN - FN·FP)/((TP+FN)(FN+TN) + (TP+FP)(FP+TN)) per file, then their mean and standard "
        "deviation over the files (population, ddof=0, unless --std sample). A rate with a zero denominator "
        "counts as 0, and HSS with a zero denominator is 0. Reads flarelens predictions.csv and the original "
        "study's fold files (timestamp, flare_prob, target).",
    )
    p.add_argument("predictions", nargs="+", metavar="PRED.csv", help="prediction files (format recognised from the header)")
    p.add_argument("--threshold", type=float, default=THRESHOLD,
                   help=f"probability at or above which a forecast is positive (default: {THRESHOLD})")
    p.add_argument("--std", choices=("population", "sample"), default="population",
                   help="standard deviation over files: population (ddof=0, default) or sample (ddof=1)")
    p.add_argument("--json", action="store_true",
                   help='print {"files": [{"path", "tp", "fp", "tn", "fn", "tss", "hss"}...], "mean": {"tss", "hss"}, '
                   '"std": {"tss", "hss"}, "std_kind"} instead of a table')
    p.set_defaults(func=run)


def run(args) -> int:
    result = evaluate_files(args.predictions, args.threshold, ddof=0 if args.std == "population" else 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"threshold {args.threshold:g} (flare_prob >= threshold is a positive forecast)")
        print(format_evaluation(result))
    return 0
