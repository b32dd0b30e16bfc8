"""``flarelens calibrate``: a monotone calibration fitted on the inner validation block."""

from __future__ import annotations

from pathlib import Path

from flarelens.errors import FlareLensError


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit a monotone calibration on the inner validation block and add flare_prob_calibrated",
        description="Fit a monotone calibration (isotonic regression, or temperature scaling of the logit) on a "
        "model's inner-validation-block predictions (inner_predictions.csv, written by `flarelens predict --rows "
        "inner`) and write flare_prob_calibrated next to flare_prob in it and in the held-out predictions of the "
        "same model (files rewritten atomically; the fitted map is kept in their .meta.json sidecars). "
        "`flarelens evaluate` then scores both. Nothing is fitted on the held-out fold.",
    )
    p.add_argument("paths", nargs="+", metavar="RUN_DIR|PRED.csv",
                   help="a run directory (its inner_predictions.csv and predictions.csv), or with --inner the "
                   "held-out prediction files to calibrate")
    p.add_argument("--inner", metavar="INNER.csv", help="the inner-block predictions to fit on (default: RUN_DIR's)")
    p.add_argument("--method", choices=("isotonic", "temperature"), default="isotonic",
                   help="isotonic regression (default) or temperature scaling")
    p.set_defaults(func=run)


def run(args) -> int:
    from flarelens.calibrate import calibrate_run
    from flarelens.predictions import INNER_NAME, PREDICTIONS_NAME

    if args.inner:
        jobs = [(Path(args.inner), [Path(p) for p in args.paths])]
    else:
        jobs = []
        for path in map(Path, args.paths):
            if not path.is_dir():
                raise FlareLensError(f"{path}: not a run directory; give RUN_DIRs, or --inner INNER.csv with prediction files")
            inner = path / INNER_NAME
            if not inner.is_file():
                raise FlareLensError(f"{inner}: no inner-block predictions; write them with "
                                     f"`flarelens predict --rows inner --out {inner} ...`")
            held = path / PREDICTIONS_NAME
            jobs.append((inner, [held] if held.is_file() else []))
    for inner, targets in jobs:
        cal = calibrate_run(inner, targets, args.method)
        names = ", ".join(str(t) for t in [inner, *targets])
        extra = f" (temperature {cal['temperature']:.3f})" if "temperature" in cal else ""
        print(f"{cal['method']} calibration{extra} fitted on {cal['n']} inner-block instances; "
              f"flare_prob_calibrated written to {names}")
    return 0
