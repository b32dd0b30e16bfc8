"""``flarelens demo``: the whole pipeline on synthetic magnetograms from the real catalog."""

from __future__ import annotations

from flarelens.demo import DemoConfig, run_demo


def register(sub) -> None:
    d = DemoConfig()
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline (simulate, label, train, predict, evaluate, locations, explain, report) on shipped data",
        description="Simulate a year of synthetic magnetograms from the bundled GOES catalog, label them, train and "
        "validate a model on held-out quarters, score it, explain it and write an HTML report: about 10 minutes on a "
        "2-core CPU, no network, no GPU. Running it again reuses the steps already done.",
    )
    p.add_argument("--out", default="runs/demo", help="run directory (default: runs/demo)")
    p.add_argument("--folds", default=",".join(map(str, d.folds)),
                   help=f"folds to train and validate, comma-separated (default: {','.join(map(str, d.folds))}; 1,2,3,4 for all)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"training epochs per fold (default: {d.epochs})")
    p.add_argument("--model", default=d.model, help=f"model (default: {d.model}; alexnet, vgg16 are slower on a CPU)")
    p.add_argument("--image-size", type=int, default=d.image_size, help=f"image side in px (default: {d.image_size})")
    p.add_argument("--cadence", default=d.cadence, help=f"time between images (default: {d.cadence})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (step lines only)")
    p.set_defaults(func=run)


def run(args) -> int:
    from flarelens.errors import FlareLensError

    try:
        folds = tuple(int(k) for k in args.folds.split(","))
    except ValueError:
        raise FlareLensError(f"--folds must be fold numbers 1-4 separated by commas, got {args.folds!r}") from None
    if not folds or any(k not in (1, 2, 3, 4) for k in folds):
        raise FlareLensError(f"--folds must be fold numbers 1-4 separated by commas, got {args.folds!r}")
    config = DemoConfig(folds=folds, epochs=args.epochs, model=args.model, image_size=args.image_size, cadence=args.cadence)
    run_demo(args.out, config, progress=not args.no_progress)
    return 0
