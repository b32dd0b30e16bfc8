"""``flarelens evaluate``: skill of prediction files against persistence and climatology, with intervals."""

from __future__ import annotations

import json
import math

from flarelens.errors import FlareLensError
from flarelens.metrics import THRESHOLD


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="skill of prediction files: TSS/HSS, Brier, AUC, baselines and intervals",
        description="Score prediction files (one per fold, typically): an instance is forecast positive when "
        "flare_prob >= THRESHOLD. Prints TP, FP, TN, FN, TSS = TP/(TP+FN) - FP/(FP+TN) and "
        "HSS = 2(TP·TN - FN·FP)/((TP+FN)(FN+TN) + (TP+FP)(FP+TN)) per file, then their mean and standard "
        "deviation over the files (population, ddof=0, unless --std sample). A rate with a zero denominator "
        "counts as 0, and HSS with a zero denominator is 0. Then, per file and pooled: TSS, HSS, the Brier skill "
        "score against the training climatology and the ROC area with 95%% day-block bootstrap intervals, beside "
        "persistence (a flare >= M1.0 started in the 24 h up to t, from the flare catalog) and climatology on the "
        "same instances; the threshold chosen on inner_predictions.csv (beside each file) applied to it; the "
        "calibrated probabilities when present. Reads flarelens predictions.csv and the original study's fold "
        "files (timestamp, flare_prob, target). Rows not held out from the model are refused.",
    )
    p.add_argument("predictions", nargs="+", metavar="PRED.csv", help="prediction files (format recognised from the header)")
    p.add_argument("--threshold", type=float, default=THRESHOLD,
                   help=f"probability at or above which a forecast is positive, in (0, 1) (default: {THRESHOLD})")
    p.add_argument("--std", choices=("population", "sample"), default="population",
                   help="standard deviation over files: population (ddof=0, default) or sample (ddof=1)")
    p.add_argument("--json", action="store_true",
                   help='print the whole result as JSON (docs/design.md, "evaluate --json"): {"files": [...], "mean", '
                   '"std", "std_kind", "pooled", "baselines", ...} instead of tables')
    p.add_argument("--catalog", help="flare catalog for the baselines (default: the bundled GOES catalog of cycle 24)")
    p.add_argument("--labels", help="labels.csv the predictions came from: the training instances of probabilistic "
                   "persistence when the predictions' sidecar does not name it")
    p.add_argument("--no-baselines", action="store_true", help="skip persistence and climatology")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples; 0 for no intervals (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--block-days", type=int, default=1, help="bootstrap block length in whole days (default: 1)")
    p.add_argument("--include-training-rows", action="store_true",
                   help="score rows that were not held out from the model too; the output is marked CONTAMINATED")
    p.set_defaults(func=run)


def run(args) -> int:
    from flarelens.evaluate import evaluate_files, format_evaluation, format_skill

    if not math.isfinite(args.threshold):
        raise FlareLensError(f"--threshold {args.threshold} is not a probability in (0, 1)")
    if args.resamples < 0:
        raise FlareLensError(f"--resamples must be >= 0, got {args.resamples}")
    if args.block_days < 1:
        raise FlareLensError(f"--block-days must be >= 1, got {args.block_days}")
    result = evaluate_files(
        args.predictions, args.threshold, ddof=0 if args.std == "population" else 1,
        baselines=not args.no_baselines, catalog=args.catalog, labels=args.labels, resamples=args.resamples,
        seed=args.seed, block_days=args.block_days, include_training_rows=args.include_training_rows,
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        if result["contaminated"]:
            print("CONTAMINATED: rows that were not held out from the model are scored (--include-training-rows)")
        print(f"threshold {args.threshold:g} (flare_prob >= threshold is a positive forecast)")
        print(format_evaluation(result))
        print(format_skill(result))
    return 0
