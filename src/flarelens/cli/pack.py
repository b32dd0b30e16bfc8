"""``flarelens pack``: every labelled image decoded and resized once into one memory-mapped uint8 array."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "pack",
        help="pack the labelled images into one memory-mapped uint8 array (fast training input)",
        description="Decode and resize every image of --labels (under --images) once into OUT, an (N, SIZE, SIZE) "
        "uint8 NumPy array file, with its index OUT.json (file, timestamp, source size and time of every row). "
        "train, predict and explain take OUT in place of the image folder (--images OUT) and see the same pixels; "
        "each epoch then slices the array instead of decoding every JPEG again. Uses all cores; an interrupted run "
        "resumes where it stopped; run again after images changed and only those are packed again. A pack made "
        "from other labels or at another size is refused (--overwrite replaces it).",
    )
    p.add_argument("--labels", required=True, metavar="CSV", help="labels.csv whose `file` column names the images")
    p.add_argument("--images", required=True, metavar="DIR", help="image root of the labels' files")
    p.add_argument("--size", type=int, default=512, metavar="PX", help="side the images are resized to (default: 512; "
                   "the --image-size of train)")
    p.add_argument("--out", required=True, metavar="OUT.npy", help="pack file to write (e.g. images-512.npy)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    p.add_argument("--overwrite", action="store_true", help="replace an OUT made from other labels or at another size")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from flarelens.pack import build_pack

    summary = build_pack(args.labels, args.images, args.out, size=args.size, workers=args.workers,
                         progress=not args.no_progress, overwrite=args.overwrite)
    print(summary.format())
    return 0
