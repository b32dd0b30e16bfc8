"""``flarelens predict``: flare probabilities from a checkpoint, for a labelled set or for image files."""

from __future__ import annotations

from pathlib import Path

from flarelens.errors import FlareLensError


def register(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="flare probabilities from a checkpoint: predictions.csv for labelled images, or one line per image file",
        description="With --labels and --images: write predictions.csv (timestamp, file, flare_prob, target, goes_class, "
        "fl_lon, fl_lat, fold, the other label columns, model_fold, role) and its sidecar predictions.meta.json "
        "(checkpoint, model fold, training base rate) for the rows the model held out (its fold), or with --rows inner "
        "inner_predictions.csv for its inner validation block (for `flarelens calibrate` and the inner-block threshold "
        "of `flarelens evaluate`). Rows that were not held out (--rows all, or --fold of another fold) are predicted "
        "with a warning and marked, and evaluate refuses them. "
        "With FILE arguments: print the probability of a flare >= the threshold in the next window for each image "
        "file (jpg, png, jp2, fits).",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="image files to score (operational use)")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by `flarelens train` (RUN_DIR/best.pt)")
    p.add_argument("--labels", help="labels.csv")
    p.add_argument("--images", metavar="DIR", help="image root of the labels' files")
    p.add_argument("--rows", choices=("heldout", "inner", "all"),
                   help="which labelled rows: the model's held-out fold (default), its inner validation block, or all")
    p.add_argument("--fold", type=int, choices=(1, 2, 3, 4),
                   help="only the rows of this fold (instead of --rows; another fold than the model's is marked as training rows)")
    p.add_argument("--out", help="output CSV (default with --labels: predictions.csv, or inner_predictions.csv with "
                   "--rows inner, in the checkpoint's directory; with FILEs: print only)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, ... (default: auto)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default: 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from flarelens import predictions
    from flarelens.fileio import write_csv
    from flarelens.predict import default_output, predict_files, predict_labels

    if args.batch_size < 1:
        raise FlareLensError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.workers < 0:
        raise FlareLensError(f"--workers must be >= 0, got {args.workers}")
    if args.files and (args.labels or args.images):
        raise FlareLensError("give either image FILEs or --labels with --images, not both")
    if args.files:
        if args.rows or args.fold:
            raise FlareLensError("--rows and --fold select labelled rows; they do not apply to image FILEs")
        frame = predict_files(args.checkpoint, args.files, batch_size=args.batch_size, device=args.device,
                              progress=sys.stderr.isatty())
        for row in frame.itertuples(index=False):
            print(f"{row.flare_prob:.4f}  {row.file}")
        if args.out:
            write_csv(frame, args.out)
        return 0
    if not (args.labels and args.images):
        raise FlareLensError("give --labels and --images (predictions.csv for a labelled set) or image FILEs")
    frame = predict_labels(args.checkpoint, args.labels, args.images, fold=args.fold, batch_size=args.batch_size,
                           device=args.device, workers=args.workers, rows=args.rows)
    # beside the checkpoint: the run directory that calibrate, evaluate and report read
    out = args.out or Path(args.checkpoint).parent / default_output(args.rows)
    predictions.write_predictions(frame, out, frame.attrs["meta"])
    positives = int((frame["flare_prob"] >= 0.5).sum())
    seen = int((frame["role"] != predictions.HELD_OUT).sum())
    note = f"; {seen} NOT held out from the model (role column)" if seen and args.rows != "inner" else ""
    print(f"{len(frame)} predictions ({positives} with flare_prob >= 0.5{note}) written to {out}")
    return 0
