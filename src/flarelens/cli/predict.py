"""``flarelens predict``: flare probabilities from a checkpoint, for a labelled set or for image files."""

from __future__ import annotations

import sys

from flarelens.errors import FlareLensError
from flarelens.fileio import write_csv
from flarelens.predict import predict_files, predict_labels


def register(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="flare probabilities from a checkpoint: predictions.csv for labelled images, or one line per image file",
        description="With --labels and --images: write predictions.csv (timestamp, file, flare_prob, target, goes_class, "
        "fl_lon, fl_lat, fold and the other label columns) for every labels row, or only fold K's rows with --fold K. "
        "With FILE arguments: print the probability of a flare >= the threshold in the next window for each image "
        "file (jpg, png, jp2, fits).",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="image files to score (operational use)")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by `flarelens train` (RUN_DIR/best.pt)")
    p.add_argument("--labels", help="labels.csv")
    p.add_argument("--images", metavar="DIR", help="image root of the labels' files")
    p.add_argument("--fold", type=int, choices=(1, 2, 3, 4), help="only the rows of this fold (the validation rows of a fold-K model)")
    p.add_argument("--out", help="output CSV (default with --labels: predictions.csv; with FILEs: print only)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default: 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.files and (args.labels or args.images):
        raise FlareLensError("give either image FILEs or --labels with --images, not both")
    if args.files:
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
                           device=args.device, workers=args.workers)
    out = args.out or "predictions.csv"
    write_csv(frame, out)
    positives = int((frame["flare_prob"] >= 0.5).sum())
    print(f"{len(frame)} predictions ({positives} with flare_prob >= 0.5) written to {out}")
    return 0
